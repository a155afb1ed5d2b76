"""Passwords (argon2), opaque bearer tokens and API keys.

Tokens and keys are random strings handed out once; only their SHA-256 is
stored, so a database dump does not let anyone sign in.
"""

from __future__ import annotations

import hashlib
import secrets

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
