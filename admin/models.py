"""The stored data of a deployment (SQLAlchemy 2.0 typed models).

Alembic (migrations/) owns the schema; a test checks these models and the
migration head agree. Ids are UUID strings so that clients (the agent's
recorder) can generate them and retried deliveries stay idempotent.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy import text as sa_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id() -> str:
    """A fresh random id."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Role(enum.StrEnum):
    """What a principal may do. ``agent`` and ``worker`` are for API keys of machine clients."""

    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    agent = "agent"
    worker = "worker"


HUMAN_ROLES = (Role.admin, Role.operator, Role.viewer)


class JobStatus(enum.StrEnum):
    """Status of an asset prepared or ingested by a background task."""

    pending = "pending"
    running = "running"
    ready = "ready"
    failed = "failed"


# Named constraints so migrations can drop them on every database (SQLite batch mode needs names).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of all admin tables."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Tenant(Timestamped, Base):
    """One organisation (a bank, a school); everything else belongs to exactly one tenant."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class User(Timestamped, Base):
    """A person who signs in to the admin API."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    hashed_password: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.viewer.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)


class AuthToken(Base):
    """An opaque bearer token issued at login; only its SHA-256 is stored."""

    __tablename__ = "auth_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key for a machine client (the agent, the avatar worker); only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.agent.value)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The deployment's own agent/worker key: it serves every organisation's calls. Made only on the
    # server (`python -m admin create-api-key --platform`, `bootstrap`), never through the API.
    platform: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Persona(Timestamped, Base):
    """What a digital human says and how: instructions, greeting, disclosure, knowledge."""

    __tablename__ = "personas"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(16), default="en")
    instructions: Mapped[str] = mapped_column(Text, default="")
    greeting: Mapped[str | None] = mapped_column(Text)
    disclosure: Mapped[str | None] = mapped_column(Text)
    knowledge_base_id: Mapped[str | None] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="SET NULL"))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Avatar(Timestamped, Base):
    """A digital human: portrait, engine and its settings, voice, persona, prepared assets."""

    __tablename__ = "avatars"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    style: Mapped[str | None] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32), default="portrait")
    width: Mapped[int] = mapped_column(Integer, default=512)
    height: Mapped[int] = mapped_column(Integer, default=512)
    fps: Mapped[int] = mapped_column(Integer, default=25)
    voice: Mapped[str | None] = mapped_column(String(128))
    persona_id: Mapped[str | None] = mapped_column(ForeignKey("personas.id", ondelete="SET NULL"))
    portrait_path: Mapped[str | None] = mapped_column(String(1024))
    portrait_sha256: Mapped[str | None] = mapped_column(String(64))
    assets_dir: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.pending.value)
    status_detail: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    prepared_for: Mapped[str | None] = mapped_column(String(64))  # sha256 of the inputs prepared
    prep_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)

    persona: Mapped[Persona | None] = relationship(lazy="raise")


class KnowledgeBase(Timestamped, Base):
    """A named collection of documents a persona may cite."""

    __tablename__ = "knowledge_bases"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16), default="en")
    # The retrieval index the agent loads (dialogue.knowledge.KnowledgeIndex.load), rebuilt after ingestion.
    index_dir: Mapped[str | None] = mapped_column(String(1024))
    index_chunks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    index_updated_at: Mapped[datetime | None]


class Document(Timestamped, Base):
    """An uploaded file of a knowledge base and its ingestion status."""

    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.pending.value)
    status_detail: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    ingested_sha256: Mapped[str | None] = mapped_column(String(64))


class DocumentChunk(Base):
    """One retrievable passage of a document, with its embedding when the ingestor gives one."""

    __tablename__ = "document_chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    embedding: Mapped[list[Any] | None] = mapped_column(JSON)


class CallSession(Base):
    """One call between a caller and a digital human (table ``sessions``)."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_tenant_started", "tenant_id", "started_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    avatar_id: Mapped[str | None] = mapped_column(ForeignKey("avatars.id", ondelete="SET NULL"), index=True)
    persona_id: Mapped[str | None] = mapped_column(ForeignKey("personas.id", ondelete="SET NULL"))
    room: Mapped[str | None] = mapped_column(String(256), index=True)
    caller_identity: Mapped[str | None] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))  # completed, abandoned, escalated, failed
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    redaction_findings: Mapped[int | None] = mapped_column(Integer)
    post_status: Mapped[str | None] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)

    turns: Mapped[list[Turn]] = relationship(
        back_populates="session", order_by="Turn.seq", lazy="raise", cascade="all, delete-orphan"
    )


class Turn(Base):
    """One utterance in a call, stored redacted, with citations and per-stage latency."""

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_session_seq", "session_id", "seq"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    speaker: Mapped[str] = mapped_column(String(16))  # user, assistant, system, human_agent
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    # the tools the policy called about a caller's turn: [{"name": ..., "arguments": {...}}], redacted
    tool_calls: Mapped[list[Any]] = mapped_column(default=list, server_default=sa_text("'[]'"))
    latency: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    session: Mapped[CallSession] = relationship(back_populates="turns", lazy="raise")


class CallTicket(Base):
    """One call as the caller's token names it: an opaque id only (a caller can read its token).

    The agent and the avatar worker exchange it, with their own keys, for the call's session,
    grant, persona, knowledge and face (``/agent/calls/{id}``); nothing of the organisation is in
    the token. The persona and knowledge are resolved when the call starts, so an edit made
    after the token was issued reaches the call.
    """

    __tablename__ = "call_tickets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(36), unique=True)
    avatar_id: Mapped[str | None] = mapped_column(ForeignKey("avatars.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Handoff(Base):
    """A call waiting for, or taken over by, a person (the tenant's live handoff queue).

    ``status``: ``waiting`` (the agent asked for a colleague), ``accepted`` (an operator took the
    call: ``accepted_by``, ``accepted_at``), ``returned`` (the operator handed it back or left),
    ``unanswered`` (nobody accepted in time: the agent told the caller and made a ticket).
    """

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_tenant_status", "tenant_id", "status"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), unique=True)
    room: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[str | None] = mapped_column(String(36))  # the user id of the operator
    operator_joined_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class IngestedEvent(Base):
    """Ids of recorder events already applied, so a redelivered event lands exactly once."""

    __tablename__ = "ingested_events"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One change made through the API. Append-only (database triggers refuse UPDATE and
    DELETE) and hash-chained per tenant, so a removed or edited row breaks the chain."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("tenant_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))  # user, api_key, system
    actor_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(32))  # create, update, delete, login, ...
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
