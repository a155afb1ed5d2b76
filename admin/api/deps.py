"""Dependencies: the DB session, the current principal and role checks.

Every route under the API depends on :func:`require` (a test walks the route
table to make sure), so no route is reachable without an explicit role list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.api import browser_session
from admin.core.audit import Actor
from admin.core.config import get_settings
from admin.core.db import new_session
from admin.core.security import API_KEY_PREFIX, TOKEN_PREFIX, sha256_hex
from admin.models import ApiKey, AuthToken, Role, Tenant, User, utcnow


def get_db() -> Iterator[Session]:
    """One ORM session per request."""
    db = new_session()
    try:
        yield db
    finally:
        db.close()


SessionDep = Annotated[Session, Depends(get_db)]


@dataclass
class Principal:
    """Who is calling: a signed-in user or a machine client with an API key."""

    kind: str  # "user" or "api_key"
    id: str
    tenant_id: str
    role: Role
    is_superuser: bool = False
    client_ip: str | None = None
    platform: bool = False  # a platform API key: serves every organisation's calls (admin.models.ApiKey)

    @property
    def actor(self) -> Actor:
        """The audit-log actor for this principal."""
        return Actor(type=self.kind, id=self.id, ip=self.client_ip)


_UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    "Sign in first: send 'Authorization: Bearer <token>' or an 'X-API-Key' header.",
    headers={"WWW-Authenticate": "Bearer"},
)


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for e in entries:
        try:
            nets.append(ipaddress.ip_network(e.strip(), strict=False))
        except ValueError:
            continue
    return nets


def _trusted(addr: str, nets: list) -> bool:  # noqa: ANN001
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_ip(request: Request) -> str | None:
    """The caller's address: the direct peer, unless the peer is one of ``ADMIN_TRUSTED_PROXIES``.

    Behind a trusted proxy the address is the right-most entry of ``X-Forwarded-For`` that is not
    itself a trusted proxy (entries further left were written by the client and prove nothing).
    With no trusted proxies configured (the default) the header is ignored.
    """
    peer = request.client.host if request.client else None
    nets = _networks(get_settings().trusted_proxies)
    if peer is None or not nets or not _trusted(peer, nets):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from the proxy chain: fall back to the proxy itself
    return peer


def get_principal(
    request: Request,
    db: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """Resolve the bearer token or API key to a principal; 401 when missing or invalid."""
    secret = x_api_key
    if not secret and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            secret = value.strip()
    from_cookie = False
    if not secret:  # a browser session of the console (CSRF-checked there)
        secret = browser_session.cookie_token(request, db)
        from_cookie = bool(secret)
    if not secret:
        raise _UNAUTHORIZED
    now = utcnow()
    ip = client_ip(request)
    if secret.startswith(API_KEY_PREFIX):
        key = db.scalar(select(ApiKey).where(ApiKey.key_hash == sha256_hex(secret)))
        if key is None or key.revoked_at is not None:
            raise _UNAUTHORIZED
        tenant = db.get(Tenant, key.tenant_id)
        if tenant is None or not tenant.is_active:
            raise _UNAUTHORIZED
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            key.last_used_at = now
            db.commit()
        return Principal("api_key", key.id, key.tenant_id, Role(key.role), client_ip=ip, platform=bool(key.platform))
    if secret.startswith(TOKEN_PREFIX):
        row = db.execute(
            select(AuthToken, User)
            .join(User, User.id == AuthToken.user_id)
            .where(AuthToken.token_hash == sha256_hex(secret))
        ).first()
        if row is None:
            raise _UNAUTHORIZED
        token, user = row
        if token.revoked_at is not None or token.expires_at <= now or not user.is_active:
            raise _UNAUTHORIZED
        tenant = db.get(Tenant, user.tenant_id)
        if tenant is None or not tenant.is_active:
            raise _UNAUTHORIZED
        tenant_id = user.tenant_id
        if from_cookie:
            request.state.console_token = secret  # read by POST /console/tenant
            if user.is_superuser:  # the organisation a platform administrator chose in the console
                chosen = browser_session.chosen_tenant(request, secret)
                if chosen and chosen != tenant_id and db.get(Tenant, chosen) is not None:
                    tenant_id = chosen
        return Principal("user", user.id, tenant_id, Role(user.role), user.is_superuser, ip)
    raise _UNAUTHORIZED


def require(*roles: Role, superuser: bool = False) -> Callable[..., Principal]:
    """A dependency that admits only principals with one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if superuser and not principal.is_superuser:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Only a platform administrator may do this.")
        if not superuser and principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"Your role '{principal.role.value}' may not do this; ask an admin of your organisation.",
            )
        return principal

    check.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route-table test
    check.superuser_only = superuser  # type: ignore[attr-defined]
    return check


# Role sets used by the routes (the auth matrix in admin/README.md).
READERS = (Role.admin, Role.operator, Role.viewer)
EDITORS = (Role.admin, Role.operator)
ADMINS = (Role.admin,)

Readers = Annotated[Principal, Depends(require(*READERS))]
Editors = Annotated[Principal, Depends(require(*EDITORS))]
Admins = Annotated[Principal, Depends(require(*ADMINS))]
AnyHuman = Readers
