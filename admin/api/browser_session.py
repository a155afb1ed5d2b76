"""Browser sessions for the web console: an HttpOnly cookie instead of a bearer header.

The cookie holds an ordinary login token (``dht_…``, stored hashed in ``auth_tokens``), so a
cookie session is revoked, expired and audited like any other login. What differs:

* ``dh_session`` is HttpOnly and SameSite=Strict (and Secure when the request came over
  HTTPS), so page scripts cannot read it and other sites' pages do not send it.
* CSRF: every state-changing request authenticated by the cookie must carry the header
  ``X-CSRF-Token`` equal to the ``dh_csrf`` cookie (double submit), and that value must be
  the HMAC of the session token with ``ADMIN_SECRET_KEY`` (so a planted cookie is useless).
  A state-changing request with a foreign ``Origin`` (or ``Sec-Fetch-Site: cross-site``)
  that carries no bearer header or API key is refused with 403 before anything else.
* Idle timeout: the token expires ``ADMIN_CONSOLE_IDLE_MINUTES`` (default 30) after the last
  request the person made; each request slides it, up to ``ADMIN_TOKEN_TTL_MINUTES`` after
  sign-in. Requests marked ``X-Console-Background: 1`` (the console's status polling) and event
  streams (``Accept: text/event-stream``, e.g. the live handoff queue) do not
  slide it, so an open tab does not keep a session alive.
* Organisation (platform administrators only): ``dh_tenant`` (HttpOnly, SameSite=Strict) holds the
  organisation a superuser chose to act on (``POST /console/tenant``), as ``<tenant id>.<HMAC of the
  session token and the id with ADMIN_SECRET_KEY>``: bound to its session, so it cannot be planted,
  written by hand or carried to another sign-in. ``get_principal`` reads it only for a cookie session
  of a user who is a superuser; every other request ignores it. Sign-in and sign-out clear it.

``get_principal`` (admin/api/deps.py) asks :func:`cookie_token` for the token when a request
has no ``Authorization`` or ``X-API-Key`` header; everything after that is the bearer path.

Settings (environment, read at each request):

* ``ADMIN_CONSOLE_IDLE_MINUTES``   ``30``
* ``ADMIN_CONSOLE_SECURE_COOKIE``  ``auto`` (Secure when the request is HTTPS) | ``true`` | ``false``
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import timedelta

from fastapi import HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.core.config import get_settings
from admin.core.security import TOKEN_PREFIX, sha256_hex
from admin.models import AuthToken, utcnow

SESSION_COOKIE = "dh_session"
CSRF_COOKIE = "dh_csrf"
TENANT_COOKIE = "dh_tenant"
CSRF_HEADER = "x-csrf-token"
BACKGROUND_HEADER = "x-console-background"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def idle_minutes() -> float:
    """Minutes of inactivity after which a console session ends (fractions allowed, at least 3 s)."""
    return max(0.05, float(os.environ.get("ADMIN_CONSOLE_IDLE_MINUTES", "30") or 30))


def csrf_for(token: str) -> str:
    """The CSRF value bound to a session token."""
    key = get_settings().secret_key.encode()
    return hmac.new(key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def _tenant_mac(token: str, tenant_id: str) -> str:
    key = get_settings().secret_key.encode()
    return hmac.new(key, b"tenant:" + token.encode() + b":" + tenant_id.encode(), hashlib.sha256).hexdigest()


def chosen_tenant(request: Request, token: str) -> str | None:
    """The organisation chosen in this console session (``dh_tenant``), when its HMAC matches the session."""
    tenant_id, _, mac = (request.cookies.get(TENANT_COOKIE) or "").rpartition(".")
    if not tenant_id or not mac or not hmac.compare_digest(mac, _tenant_mac(token, tenant_id)):
        return None
    return tenant_id


def choose_tenant(request: Request, response: Response, token: str, tenant_id: str | None) -> None:
    """Set the session's organisation (``None``: the user's own, the cookie is removed)."""
    secure = secure_cookies(request)
    if tenant_id is None:
        response.delete_cookie(TENANT_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
        return
    response.set_cookie(TENANT_COOKIE, f"{tenant_id}.{_tenant_mac(token, tenant_id)}",
                        max_age=get_settings().token_ttl_minutes * 60, path="/", httponly=True, secure=secure,
                        samesite="strict")


def secure_cookies(request: Request) -> bool:
    """Whether cookies get the Secure flag for this request."""
    mode = os.environ.get("ADMIN_CONSOLE_SECURE_COOKIE", "auto").strip().lower()
    if mode in ("true", "1", "yes"):
        return True
    if mode in ("false", "0", "no"):
        return False
    return request.url.scheme == "https"


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def refuse_cross_site(request: Request) -> None:
    """403 for a state-changing request sent by another site's page."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") != _own_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Cross-site request refused (CSRF protection).")
    if origin == "null" or request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Cross-site request refused (CSRF protection).")


def cookie_token(request: Request, db: Session) -> str | None:
    """The session token from the cookie, after the CSRF checks; None when there is no cookie.

    Slides the idle timeout of a valid session (unless the request is background polling).
    """
    refuse_cross_site(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    if request.method not in SAFE_METHODS:
        header = request.headers.get(CSRF_HEADER) or ""
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        if not (header and hmac.compare_digest(header, cookie) and hmac.compare_digest(header, csrf_for(token))):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                "Missing or wrong CSRF token; reload the console and try again.")
    # Background: the console's status polling (marked) and event streams (EventSource cannot add a
    # header; it reconnects by itself every few minutes, which is not the operator doing anything).
    background = (request.headers.get(BACKGROUND_HEADER) == "1"
                  or "text/event-stream" in (request.headers.get("accept") or ""))
    if not background:
        _slide(db, token)
    return token


def _slide(db: Session, token: str) -> None:
    row = db.scalar(select(AuthToken).where(AuthToken.token_hash == sha256_hex(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return
    cap = row.created_at + timedelta(minutes=get_settings().token_ttl_minutes)
    new_expiry = min(now + timedelta(minutes=idle_minutes()), cap)
    if (new_expiry - row.expires_at).total_seconds() >= min(30.0, idle_minutes() * 6):  # not a write per request
        row.expires_at = new_expiry
        db.commit()


def start(request: Request, response: Response, db: Session, token: str) -> tuple[str, object]:
    """Turn a fresh login token into a cookie session: idle expiry, cookies set. Returns (csrf, expires_at)."""
    row = db.scalar(select(AuthToken).where(AuthToken.token_hash == sha256_hex(token)))
    assert row is not None
    row.expires_at = min(utcnow() + timedelta(minutes=idle_minutes()), row.expires_at)
    db.commit()
    csrf = csrf_for(token)
    secure = secure_cookies(request)
    max_age = get_settings().token_ttl_minutes * 60
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, secure=secure,
                        samesite="strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", httponly=False, secure=secure,
                        samesite="strict")
    if request.cookies.get(TENANT_COOKIE):  # a new sign-in starts in the user's own organisation
        choose_tenant(request, response, token, None)
    return csrf, row.expires_at


def end(request: Request, response: Response, db: Session) -> bool:
    """Revoke the cookie's token and clear the cookies; True when a session was revoked."""
    token = request.cookies.get(SESSION_COOKIE)
    revoked = False
    if token:
        row = db.scalar(select(AuthToken).where(AuthToken.token_hash == sha256_hex(token)))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            revoked = True
    secure = secure_cookies(request)
    for name in (SESSION_COOKIE, CSRF_COOKIE, TENANT_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name != CSRF_COOKIE, samesite="strict")
    return revoked
