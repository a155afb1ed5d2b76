"""What a deployment may not run with: the one place for the secret rules of every service.

``DH_ENV=production`` (compose sets it for every service; the admin also reads ``ADMIN_ENV``)
makes each service refuse to start with a default, known or short secret, with one line naming
every variable at fault. The admin checks its own keys (:mod:`admin.core.config`) with the same
rules; the agent and the avatar worker check LiveKit's keys and their admin key here, before they
register with LiveKit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

DEFAULT_SECRET_KEY = "change-me-in-production"
# Values shipped as examples or dev defaults: production refuses them.
KNOWN_WEAK_SECRETS = {DEFAULT_SECRET_KEY, "devkey", "secret", "changeme", "change-me", "password", "admin"}
MIN_SECRET_LENGTH = 32
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class InsecureConfigurationError(RuntimeError):
    """Production mode with a default or short secret."""


def secret_problem(env_name: str, value: str | None) -> str | None:
    """Why ``value`` may not be the secret ``env_name`` in production (None when it may)."""
    if not value:
        return f"{env_name} is unset"
    if value.lower() in KNOWN_WEAK_SECRETS or len(value) < MIN_SECRET_LENGTH:
        return f"{env_name} is a known default or shorter than {MIN_SECRET_LENGTH} characters"
    return None


def livekit_key_problem(value: str | None) -> str | None:
    """LiveKit's API key is an identifier, not a secret: only the development one is refused."""
    if not value:
        return "LIVEKIT_API_KEY is unset"
    if value.lower() in KNOWN_WEAK_SECRETS:
        return "LIVEKIT_API_KEY is the development default 'devkey'"
    return None


def refusal(service: str, problems: Iterable[str]) -> InsecureConfigurationError | None:
    """The one error a service stops with (None when there is nothing to refuse)."""
    found = [p for p in problems if p]
    if not found:
        return None
    return InsecureConfigurationError(
        f"Refusing to start {service} in production (DH_ENV=production): " + "; ".join(found)
        + f". Generate secrets with: {GENERATE}")


def is_production(env: Mapping[str, str] | None = None) -> bool:
    e = os.environ if env is None else env
    return (e.get("DH_ENV") or e.get("ADMIN_ENV") or "").strip().lower() == "production"


def check_worker(service: str, *, admin_key_names: tuple[str, ...], env: Mapping[str, str] | None = None) -> None:
    """The agent's and the avatar worker's check: LiveKit's keys, and the admin key they call with.

    Raises :class:`InsecureConfigurationError` in production; does nothing otherwise.
    """
    e = os.environ if env is None else env
    if not is_production(e):
        return
    problems = [livekit_key_problem(e.get("LIVEKIT_API_KEY")), secret_problem("LIVEKIT_API_SECRET", e.get("LIVEKIT_API_SECRET"))]
    if admin_key_names:  # a service that calls the admin (not the failover watcher, which only talks to LiveKit)
        admin_key = next((e[n] for n in admin_key_names if e.get(n)), "")
        shown = admin_key_names[-1] + (f" (or {', '.join(admin_key_names[:-1])})" if len(admin_key_names) > 1 else "")
        problems += [None if e.get("DH_ADMIN_URL") or e.get("AVATAR_ADMIN_URL") else "DH_ADMIN_URL is unset",
                     secret_problem(shown, admin_key)]
    err = refusal(service, problems)
    if err is not None:
        raise err


def exit_if_insecure(service: str, *, admin_key_names: tuple[str, ...]) -> None:
    """A worker's first step: :func:`check_worker`, ending the process with its one line."""
    try:
        check_worker(service, admin_key_names=admin_key_names)
    except InsecureConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None
