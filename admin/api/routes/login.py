"""Password login (argon2) issuing opaque bearer tokens; logout revokes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from sqlalchemy import func, select

from admin.api.deps import READERS, Principal, SessionDep, client_ip, require
from admin.core import audit
from admin.core.config import get_settings
from admin.core.security import hash_password, needs_rehash, new_token, sha256_hex, verify_password
from admin.models import AuthToken, User, utcnow
from admin.schemas import TokenOut

router = APIRouter(tags=["login"])


@router.post("/login/access-token", response_model=TokenOut)
def login(
    request: Request,
    db: SessionDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> TokenOut:
    """Exchange e-mail and password for a bearer token (OAuth2 password form). Rate limited."""
    settings = get_settings()
    email = username.strip().lower()
    limiter = request.app.state.rate_limiter
    ip = client_ip(request)
    # Failed attempts are counted, per address and per (account, address) -- never per account alone,
    # so failures from other addresses cannot lock a user out; colleagues signing in behind one
    # address are not throttled by each other's successful sign-ins.
    keys = (f"login:ip:{ip}", f"login:email:{email}:ip:{ip}")
    for key in keys:
        limiter.check(key, settings.login_rate_limit)
    user = db.scalar(select(User).where(func.lower(User.email) == email))
    if not verify_password(password, user.hashed_password if user else None) or user is None or not user.is_active:
        for key in keys:
            limiter.hit(key, settings.login_rate_limit)
        if user is not None:  # failed attempts on a real account are part of the record
            audit.record(db, tenant_id=user.tenant_id, actor=audit.Actor("user", user.id, client_ip(request)),
                         action="login_failed", resource="user", resource_id=user.id)
            db.commit()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Wrong e-mail or password.")
    if needs_rehash(user.hashed_password):
        user.hashed_password = hash_password(password)
    token = new_token()
    expires = utcnow() + timedelta(minutes=settings.token_ttl_minutes)
    db.add(AuthToken(user_id=user.id, token_hash=sha256_hex(token), expires_at=expires))
    audit.record(
        db, tenant_id=user.tenant_id, actor=audit.Actor("user", user.id, client_ip(request)),
        action="login", resource="user", resource_id=user.id,
    )
    db.commit()
    return TokenOut(access_token=token, expires_at=expires)


@router.post("/logout", status_code=204)
def logout(
    request: Request,
    db: SessionDep,
    principal: Annotated[Principal, Depends(require(*READERS))],
) -> None:
    """Revoke the bearer token used for this request."""
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if principal.kind == "user" and scheme.lower() == "bearer":
        tok = db.scalar(select(AuthToken).where(AuthToken.token_hash == sha256_hex(value.strip())))
        if tok is not None:
            tok.revoked_at = utcnow()
            audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="logout",
                         resource="user", resource_id=principal.id)
            db.commit()
