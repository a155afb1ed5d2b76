"""LiveKit access tokens for a caller: one room, at most 15 minutes, dispatching the agent.

Rooms and identities are scoped: a custom ``room`` must lie in the caller's tenant's namespace
(:func:`admin.core.security.room_prefix`), so nobody obtains a token for another tenant's call;
identities starting with a reserved prefix (``agent-``, ``avatar-``, ``caller-``, ``operator-``,
``console-test-``) are never issued on request, so nobody can pose as the agent, the avatar, a caller,
an operator or the console's test call (and kick them out).
The token's dispatch metadata is ``{"ticket": <opaque id>}`` and nothing else: a caller can read
its token, so it names no organisation, path, persona or grant. The agent reaches the admin API
through its own configuration (``DH_ADMIN_URL``) and exchanges the ticket, with its agent key, for
the call's session, grant, persona, knowledge and face (:mod:`admin.api.routes.calls`).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import delete

from admin import crud
from admin.api.deps import Principal, SessionDep, require
from admin.api.routes.handoffs import OPERATOR_PREFIX
from admin.core import audit
from admin.core.config import get_settings
from admin.core.security import room_prefix
from admin.models import Avatar, CallTicket, JobStatus, Role, utcnow
from admin.schemas import CallTokenOut, CallTokenRequest
from agent.contract import AVATAR_PREFIX, CallDispatch, call_token
from dialogue.guardrails import redact

router = APIRouter(prefix="/tokens", tags=["tokens"])
TokenIssuers = Annotated[Principal, Depends(require(Role.admin, Role.operator, Role.agent))]
# LiveKit identities the platform's own participants use, or that the server gives callers.
TEST_CALL_PREFIX = "console-test-"  # the console's test calls (POST /console/test-call)
RESERVED_IDENTITY_PREFIXES = ("agent-", AVATAR_PREFIX, "caller-", OPERATOR_PREFIX, TEST_CALL_PREFIX)


def call_room(tenant_id: str, avatar_id: str, session_id: str) -> str:
    """A new call's room: the tenant's namespace, then the avatar and the session. Each id piece
    follows a letter, so that 8 hex digits that happen to be decimal ("59627935") never read as a
    phone number to the check that refuses rooms holding personal data."""
    return f"{room_prefix(tenant_id)}-a{avatar_id[:8]}-s{session_id[:8]}"


def _check_identity(identity: str) -> None:
    if identity.strip().lower().startswith(RESERVED_IDENTITY_PREFIXES) or not identity.strip():
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"Identities starting with {', '.join(RESERVED_IDENTITY_PREFIXES)} are reserved; "
                            "choose another or leave it out.")


def _check_room(room: str, tenant_id: str) -> None:
    prefix = room_prefix(tenant_id) + "-"
    if not room.startswith(prefix) or len(room) == len(prefix):
        # 404, like every other tenant's resource: whether the room exists is not revealed
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"No room {room} in your organisation (its rooms start with '{prefix}').")
    if redact(room) != room:
        # rooms are addresses, kept in the call record and the handoff queue as they are
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "A room name may not hold personal data (a phone, card or account number, an email).")


@router.post("/livekit", response_model=CallTokenOut, status_code=201)
def livekit_token(body: CallTokenRequest, request: Request, db: SessionDep, principal: TokenIssuers) -> CallTokenOut:
    """A room-scoped join token whose room configuration dispatches ``AGENT_NAME`` with the avatar."""
    return mint(body, request, db, principal)


def mint(body: CallTokenRequest, request: Request, db: SessionDep, principal: Principal, *,
         identity: str | None = None) -> CallTokenOut:
    """The one minter of callers' tokens. ``identity`` (server-chosen, e.g. the console's test call)
    may use a reserved prefix; ``body.identity`` (the requester's choice) may not."""
    s = get_settings()
    request.app.state.rate_limiter.hit(f"token:{principal.kind}:{principal.id}", s.token_rate_limit)
    avatar = crud.get_owned(db, Avatar, body.avatar_id, principal.tenant_id, what="avatar")
    if avatar.status == JobStatus.failed:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"Avatar '{avatar.name}' failed preparation: {avatar.status_detail or 'see its status'}")
    if body.room is not None:
        _check_room(body.room, principal.tenant_id)
    if body.identity is not None:
        _check_identity(body.identity)
    ttl = min(body.ttl_seconds, s.max_token_ttl_seconds)
    session_id = str(uuid.uuid4())
    room = body.room or call_room(avatar.tenant_id, avatar.id, session_id)
    identity = identity or body.identity or f"caller-{session_id[:8]}"
    now = utcnow()
    db.execute(delete(CallTicket).where(CallTicket.expires_at < now))  # indexed: a few rows at most
    ticket = CallTicket(id=secrets.token_urlsafe(24), tenant_id=avatar.tenant_id, session_id=session_id,
                        avatar_id=avatar.id, created_at=now,
                        expires_at=now + timedelta(seconds=s.session_grant_ttl_seconds))
    db.add(ticket)
    token = call_token(s.livekit_api_key, s.livekit_api_secret, room=room, identity=identity, name=body.name,
                       agent_name=s.agent_name, dispatch=CallDispatch(ticket=ticket.id), ttl=timedelta(seconds=ttl))
    audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="issue_token",
                 resource="livekit_token", resource_id=session_id,
                 changes={"room": room, "identity": identity, "avatar_id": avatar.id, "ttl_seconds": ttl})
    db.commit()
    return CallTokenOut(server_url=s.livekit_url, token=token, room=room, identity=identity,
                        session_id=session_id, expires_at=utcnow() + timedelta(seconds=ttl))
