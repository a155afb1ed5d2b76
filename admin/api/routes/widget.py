"""Public routes for the caller's web widget and kiosk page (no login; rate limited).

A page that embeds the widget holds no secret: it names an avatar id, and this
router mints a LiveKit token for a new room with that avatar, through the same
code as ``POST /tokens/livekit``. Only avatars enabled in ``ADMIN_WIDGET_AVATARS``
of active organisations answer; the rest look missing.

Settings (environment, read at each request so tests can change them):

* ``ADMIN_WIDGET_AVATARS``      ``""`` (widget off) | ``id1,id2`` (those avatars) | ``slug:*`` (every
  avatar of the organisation with that slug); entries combine. A bare ``*`` enables nothing:
  one entry never spans organisations.
* ``ADMIN_WIDGET_RATE_LIMIT``   ``"6/60"``: tokens per client address per window (seconds)
* ``ADMIN_WIDGET_AVATAR_RATE_LIMIT`` ``"120/60"``: tokens per avatar per window (all callers)
* ``ADMIN_WIDGET_ORIGINS``      ``""``: origins (exact, comma-separated) allowed to call these routes
  from a browser on another origin; empty: same origin only. The widget script itself is a static
  file and loads anywhere.
* ``ADMIN_WIDGET_TOKEN_TTL_SECONDS`` ``"600"``: lifetime of a widget token (capped like every token)
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from admin.api.deps import Principal, SessionDep, client_ip
from admin.api.routes import tokens
from admin.models import Avatar, JobStatus, Role, Tenant
from admin.schemas import CallTokenRequest, In

router = APIRouter(prefix="/widget", tags=["widget"])


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ADMIN_WIDGET_{name}", default).strip()


def _enabled_avatar(db, avatar_id: str) -> Avatar:
    """The avatar if the widget may use it; 404 (as if missing) otherwise."""
    entries = {a.strip() for a in _env("AVATARS", "").split(",") if a.strip()}
    avatar = db.get(Avatar, avatar_id) if avatar_id else None
    tenant = db.get(Tenant, avatar.tenant_id) if avatar is not None else None
    enabled = tenant is not None and tenant.is_active and (avatar.id in entries or f"{tenant.slug}:*" in entries)
    if not enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This assistant is not available on the web.")
    return avatar


def _cors(request: Request, response: Response) -> None:
    origin = request.headers.get("origin")
    if not origin:
        return
    allowed = {o.strip().rstrip("/") for o in _env("ORIGINS", "").split(",") if o.strip()}
    if origin in allowed:  # exact origins only: never a reflected or wildcard answer
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"


class WidgetTokenRequest(In):
    """What the widget sends: only the avatar it shows."""

    avatar_id: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=64)


class WidgetTokenOut(BaseModel):
    """What the browser needs to join its call, and nothing else."""

    server_url: str
    token: str
    room: str
    identity: str
    expires_at: datetime


class WidgetAvatarOut(BaseModel):
    """What the idle screen shows."""

    id: str
    name: str
    portrait_url: str | None


@router.options("/token", include_in_schema=False)
@router.options("/avatars/{avatar_id}", include_in_schema=False)
@router.options("/avatars/{avatar_id}/portrait", include_in_schema=False)
def preflight(request: Request) -> Response:
    """CORS preflight for pages on other origins."""
    response = Response(status_code=204)
    _cors(request, response)
    return response


@router.get("/avatars/{avatar_id}", response_model=WidgetAvatarOut)
def widget_avatar(avatar_id: str, request: Request, response: Response, db: SessionDep) -> WidgetAvatarOut:
    """Name and portrait of an avatar enabled for the widget (public)."""
    _cors(request, response)
    avatar = _enabled_avatar(db, avatar_id)
    has_portrait = bool(avatar.portrait_path and Path(avatar.portrait_path).is_file())
    portrait = str(request.url_for("widget_portrait", avatar_id=avatar.id)) if has_portrait else None
    return WidgetAvatarOut(id=avatar.id, name=avatar.name, portrait_url=portrait)


@router.get("/avatars/{avatar_id}/portrait", response_class=FileResponse, name="widget_portrait")
def widget_portrait(avatar_id: str, request: Request, db: SessionDep) -> FileResponse:
    """The avatar's stored portrait (PNG) for the idle screen (public)."""
    avatar = _enabled_avatar(db, avatar_id)
    if not avatar.portrait_path or not Path(avatar.portrait_path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This assistant has no portrait.")
    response = FileResponse(avatar.portrait_path, media_type="image/png",
                            headers={"Cache-Control": "public, max-age=300"})
    _cors(request, response)
    return response


@router.post("/token", response_model=WidgetTokenOut, status_code=201)
def widget_token(body: WidgetTokenRequest, request: Request, response: Response, db: SessionDep) -> WidgetTokenOut:
    """A token for one new call with an avatar enabled for the widget (public, rate limited).

    The room and identity are chosen here, never by the page, so a caller cannot join
    somebody else's call.
    """
    _cors(request, response)
    ip = client_ip(request) or "unknown"
    limiter = request.app.state.rate_limiter
    limiter.hit(f"widget:ip:{ip}", _env("RATE_LIMIT", "6/60"))
    avatar = _enabled_avatar(db, body.avatar_id)
    limiter.hit(f"widget:avatar:{avatar.id}", _env("AVATAR_RATE_LIMIT", "120/60"))
    if avatar.status == JobStatus.failed:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "This assistant is not available right now.")
    principal = Principal(kind="widget", id=f"ip:{ip}", tenant_id=avatar.tenant_id, role=Role.agent, client_ip=ip)
    request_body = CallTokenRequest(
        avatar_id=avatar.id, name=(body.name or "Caller").strip()[:64] or "Caller",
        ttl_seconds=max(30, int(_env("TOKEN_TTL_SECONDS", "600") or 600)),
    )
    out = tokens.livekit_token(request_body, request, db, principal)
    return WidgetTokenOut(server_url=out.server_url, token=out.token, room=out.room, identity=out.identity,
                          expires_at=out.expires_at)
