"""Settings for the admin backend, read from ``ADMIN_*`` environment variables.

Defaults run on a laptop with nothing else installed: SQLite for data and
kombu's SQLAlchemy transport (also SQLite) as the Celery broker.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.paths import cache_root
from agent.paths import models_dir as default_models_dir
from agent.production import (  # the secret rules of every service (one place)
    DEFAULT_SECRET_KEY,
    InsecureConfigurationError,
    livekit_key_problem,
    refusal,
    secret_problem,
)

__all__ = ["DEFAULT_SECRET_KEY", "InsecureConfigurationError", "Settings", "get_settings"]


def _default_data_dir() -> Path:
    return cache_root()


class Settings(BaseSettings):
    """Every knob of the admin backend; see admin/README.md for the list."""

    model_config = SettingsConfigDict(env_prefix="ADMIN_", env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    # The models folder, when the agent's models are on this machine: voice names are checked against it.
    models_dir: Path = Field(default_factory=default_models_dir,
                             validation_alias=AliasChoices("ADMIN_MODELS_DIR", "DH_MODELS_DIR"))
    database_url: str = ""  # empty -> sqlite under data_dir/admin.db
    broker_url: str = ""  # empty -> sqla+sqlite under data_dir/broker.db; redis://... in deployment
    celery_eager: bool = False  # run tasks inline (tests, single-process demos)
    secret_key: str = DEFAULT_SECRET_KEY  # signs session grants; production refuses the default
    # production refuses weak secrets at start; compose sets DH_ENV for every service
    env: Literal["development", "production"] = Field(default="development",
                                                      validation_alias=AliasChoices("ADMIN_ENV", "DH_ENV"))
    audit_key: str = ""  # HMAC key of the audit chain (outside the DB); empty: derived from secret_key
    audit_anchor_dir: Path | None = None  # signed chain heads; default data_dir/audit-anchors
    session_grant_ttl_seconds: int = 24 * 3600  # how long a call may deliver its recording
    trusted_proxies: list[str] = []  # addresses/CIDRs whose X-Forwarded-For is believed; none by default
    metrics_token: str = ""  # bearer token for /metrics; empty: /metrics answers 404
    frame_ancestors: str = "'none'"  # CSP frame-ancestors of the HTML pages (kiosk in an iframe: list origins)

    api_prefix: str = "/api/v1"
    public_url: str | None = None  # this API's own URL for CLI output (never sent to the agent)
    cors_origins: list[str] = []

    token_ttl_minutes: int = 12 * 60
    login_rate_limit: str = "10/60"  # failed sign-ins/seconds per client address, and per address and e-mail
    token_rate_limit: str = "30/60"  # LiveKit tokens per principal
    rate_limit_redis_url: str | None = None  # share limits between API processes

    # A short clip of the prepared avatar saying a sentence (the call's own rendering path), for the
    # console: cpu = for the CPU engines (seconds per avatar), all = also on GPU workers, off = none.
    avatar_preview: Literal["cpu", "all", "off"] = "cpu"

    max_portrait_bytes: int = 10 * 1024 * 1024
    max_portrait_pixels: int = 40_000_000
    min_portrait_side: int = 256
    max_document_bytes: int = 20 * 1024 * 1024
    max_document_chunks: int = 5000  # passages per document; more fails the document ("split it")
    ingest_time_limit_seconds: float = 120.0  # parsing one document (a child process, killed after this)
    ingest_memory_mb: int = 1024  # address-space limit of that child process

    # Request bodies, enforced at the ASGI layer before the app reads them (413 past the limit).
    max_body_bytes: int = 1024 * 1024  # any route without its own limit
    max_public_body_bytes: int = 16 * 1024  # routes without authentication (widget, login)

    first_admin_email: str | None = None
    first_admin_password: str | None = None
    first_tenant: str = "default"
    # The deployment's agent/avatar key, given in the environment (compose: DH_AGENT_KEY) so a
    # deployment needs no manual key step: `serve` stores it (hashed) as a platform agent key.
    platform_agent_key: str = ""

    knowledge_ingestor: str = "admin.ingest:dialogue_ingestor"

    livekit_url: str = Field(
        default="ws://127.0.0.1:7880", validation_alias=AliasChoices("ADMIN_LIVEKIT_URL", "LIVEKIT_URL")
    )
    livekit_api_key: str = Field(
        default="devkey", validation_alias=AliasChoices("ADMIN_LIVEKIT_API_KEY", "LIVEKIT_API_KEY")
    )
    livekit_api_secret: str = Field(
        default="secret", validation_alias=AliasChoices("ADMIN_LIVEKIT_API_SECRET", "LIVEKIT_API_SECRET")
    )
    agent_name: str = Field(default="dh-agent", validation_alias=AliasChoices("ADMIN_AGENT_NAME", "AGENT_NAME"))
    max_token_ttl_seconds: int = 900

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to an SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'admin.db'}"

    @property
    def celery_broker_url(self) -> str:
        """The Celery broker, defaulting to the embedded SQLAlchemy transport."""
        if self.broker_url:
            return self.broker_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def anchor_dir(self) -> Path:
        """Where the signed heads of the audit chains are written."""
        return self.audit_anchor_dir or self.data_dir / "audit-anchors"

    def insecure_settings(self) -> list[str]:
        """Why these settings must not run in production (empty when they may)."""
        problems = [
            secret_problem("ADMIN_SECRET_KEY", self.secret_key),
            secret_problem("ADMIN_AUDIT_KEY", self.audit_key),
            secret_problem("LIVEKIT_API_SECRET", self.livekit_api_secret),
            livekit_key_problem(self.livekit_api_key),
        ]
        if self.audit_key and self.audit_key == self.secret_key:
            problems.append("ADMIN_AUDIT_KEY must differ from ADMIN_SECRET_KEY")
        if self.metrics_token and len(self.metrics_token) < 16:
            problems.append("ADMIN_METRICS_TOKEN is shorter than 16 characters")
        if self.platform_agent_key:
            problems.append(secret_problem("ADMIN_PLATFORM_AGENT_KEY", self.platform_agent_key))
        return [p for p in problems if p]

    def check_production(self) -> None:
        """In production mode, refuse to start with default or short secrets (one error naming them all)."""
        if self.env != "production":
            return
        err = refusal("the admin", self.insecure_settings())
        if err is not None:
            raise err

    @property
    def media_dir(self) -> Path:
        """Where portraits, prepared avatar assets and documents are stored."""
        return self.data_dir / "media"


@functools.lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
