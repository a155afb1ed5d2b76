"""Passwords (argon2), opaque bearer tokens and API keys.

Tokens and keys are random strings handed out once; only their SHA-256 is
stored, so a database dump does not let anyone sign in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

TOKEN_PREFIX = "dht_"
API_KEY_PREFIX = "dhk_"
# Verified against when the e-mail is unknown, so timing does not reveal which e-mails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """Argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether ``password`` matches ``hashed`` (constant work when ``hashed`` is None)."""
    try:
        return _hasher.verify(hashed or _DUMMY_HASH, password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    """Whether the hash was made with older argon2 parameters."""
    return _hasher.check_needs_rehash(hashed)


def sha256_hex(value: str) -> str:
    """Hex SHA-256 of a secret, as stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_token() -> str:
    """A fresh login token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A fresh API key for a machine client."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


# --- per-call session grants ----------------------------------------------------------------
# The token route mints one per call and puts it in the agent's dispatch metadata; the agent's
# recorder sends it with each event. The API records an event only in the tenant the grant was
# minted for and only for the session it names, so an agent key (shared by the calls of every
# tenant) cannot write one tenant's call into another, and a leaked grant reaches one session.
GRANT_PREFIX = "dsg1"


class GrantError(ValueError):
    """A session grant that is malformed, forged, expired or for another session."""


def derived_key(purpose: str, secret: str | None = None) -> bytes:
    """A key for one purpose derived from ``ADMIN_SECRET_KEY`` (or ``secret``)."""
    from admin.core.config import get_settings

    return hmac.new((secret or get_settings().secret_key).encode(), purpose.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_session_grant(tenant_id: str, session_id: str, ttl_seconds: int) -> str:
    """A signed, expiring grant to record session ``session_id`` of tenant ``tenant_id``."""
    body = _b64(json.dumps({"t": tenant_id, "s": session_id, "e": int(time.time()) + ttl_seconds},
                           separators=(",", ":")).encode())
    mac = _b64(hmac.new(derived_key("session-grant"), f"{GRANT_PREFIX}.{body}".encode(), hashlib.sha256).digest())
    return f"{GRANT_PREFIX}.{body}.{mac}"


def verify_session_grant(grant: str, session_id: str) -> str:
    """The tenant id a valid grant for ``session_id`` names; :class:`GrantError` otherwise."""
    try:
        prefix, body, mac = grant.split(".")
    except (AttributeError, ValueError):
        raise GrantError("malformed session grant") from None
    expected = hmac.new(derived_key("session-grant"), f"{prefix}.{body}".encode(), hashlib.sha256).digest()
    try:
        ok = prefix == GRANT_PREFIX and hmac.compare_digest(_unb64(mac), expected)
        claims = json.loads(_unb64(body)) if ok else None
    except (ValueError, TypeError):
        ok, claims = False, None
    if not ok or not isinstance(claims, dict):
        raise GrantError("session grant signature invalid")
    if claims.get("s") != session_id:
        raise GrantError("session grant is for another session")
    if not isinstance(claims.get("e"), int) or claims["e"] < time.time():
        raise GrantError("session grant expired")
    return str(claims["t"])


def room_prefix(tenant_id: str) -> str:
    """The room-name namespace of a tenant: every room its tokens may join starts with it + '-'."""
    return "dh" + hashlib.sha256(f"room:{tenant_id}".encode()).hexdigest()[:12]
