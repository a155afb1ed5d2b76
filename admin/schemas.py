"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from admin.models import Role
from admin.persona_settings import PersonaSettings, SettingsField


class Out(BaseModel):
    """Base of response models read from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# --- auth ---------------------------------------------------------------------------------
class TokenOut(BaseModel):
    """A login token."""

    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


# --- tenants and users --------------------------------------------------------------------
class TenantOut(Out):
    """An organisation."""

    id: str
    name: str
    slug: str
    is_active: bool
    created_at: datetime


class TenantCreate(BaseModel):
    """A new organisation with its first admin."""

    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    admin_email: EmailStr
    admin_password: str = Field(min_length=10, max_length=200)


class TenantUpdate(BaseModel):
    """Changeable organisation fields."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


class UserOut(Out):
    """A person who signs in."""

    id: str
    tenant_id: str
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    created_at: datetime


class UserCreate(BaseModel):
    """A new user of the caller's organisation."""

    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    full_name: str | None = None
    role: Literal["admin", "operator", "viewer"] = "viewer"


class UserUpdate(BaseModel):
    """Changeable user fields (admins only)."""

    full_name: str | None = None
    role: Literal["admin", "operator", "viewer"] | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=200)


class ApiKeyCreate(BaseModel):
    """A new key for a machine client."""

    name: str = Field(min_length=1, max_length=200)
    role: Literal["agent", "worker", "viewer", "operator"] = "agent"


class ApiKeyOut(Out):
    """An API key as listed (the secret is shown only once, at creation)."""

    id: str
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A freshly created key, including the secret."""

    key: str


# --- personas, avatars --------------------------------------------------------------------
class PersonaIn(BaseModel):
    """Fields of a persona."""

    name: str = Field(min_length=1, max_length=200)
    language: str = "en"
    instructions: str = ""
    greeting: str | None = None
    disclosure: str | None = None
    knowledge_base_id: str | None = None
    settings: SettingsField = PersonaSettings()


class PersonaUpdate(BaseModel):
    """Partial update of a persona."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    language: str | None = None
    instructions: str | None = None
    greeting: str | None = None
    disclosure: str | None = None
    knowledge_base_id: str | None = None
    settings: SettingsField | None = None


class PersonaOut(PersonaIn, Out):
    """A persona."""

    settings: dict[str, Any] = {}
    id: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime


Engine = Literal["simple", "portrait", "flashtalk"]


class AvatarIn(BaseModel):
    """Fields of an avatar."""

    name: str = Field(min_length=1, max_length=200)
    style: str | None = None
    engine: Engine = "portrait"
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    fps: int = Field(default=25, ge=1, le=60)
    voice: str | None = None
    persona_id: str | None = None


class AvatarUpdate(BaseModel):
    """Partial update of an avatar."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    style: str | None = None
    engine: Engine | None = None
    width: int | None = Field(default=None, ge=64, le=2048)
    height: int | None = Field(default=None, ge=64, le=2048)
    fps: int | None = Field(default=None, ge=1, le=60)
    voice: str | None = None
    persona_id: str | None = None


class AvatarOut(AvatarIn, Out):
    """An avatar and the state of its prepared assets."""

    id: str
    tenant_id: str
    portrait_sha256: str | None
    assets_dir: str | None
    status: str
    status_detail: str | None
    progress: float
    prep_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- knowledge ----------------------------------------------------------------------------
class KnowledgeBaseIn(BaseModel):
    """Fields of a knowledge base."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    language: str = "en"


class KnowledgeBaseUpdate(BaseModel):
    """Partial update of a knowledge base."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    language: str | None = None


class KnowledgeBaseOut(KnowledgeBaseIn, Out):
    """A knowledge base; ``index_dir`` is the folder the agent loads with ``KnowledgeIndex.load``."""

    id: str
    tenant_id: str
    index_dir: str | None
    index_chunks: int
    index_updated_at: datetime | None
    created_at: datetime


class DocumentOut(Out):
    """An uploaded document and its ingestion status."""

    id: str
    knowledge_base_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    status: str
    status_detail: str | None
    progress: float
    chunk_count: int
    created_at: datetime


# --- sessions and turns -------------------------------------------------------------------
class TurnOut(Out):
    """One stored (redacted) utterance."""

    id: str
    seq: int
    speaker: str
    text: str
    language: str | None
    interrupted: bool
    citations: list[Any]
    latency: dict[str, Any]
    started_at: datetime | None
    ended_at: datetime | None


class SessionOut(Out):
    """A call."""

    id: str
    tenant_id: str
    avatar_id: str | None
    persona_id: str | None
    room: str | None
    caller_identity: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    escalated: bool
    escalation_reason: str | None
    summary: str | None
    redaction_findings: int | None
    post_status: str | None
    meta: dict[str, Any]


class SessionDetail(SessionOut):
    """A call with its turns."""

    turns: list[TurnOut]


class SessionPage(BaseModel):
    """A page of calls."""

    items: list[SessionOut]
    total: int
    limit: int
    offset: int


class SessionStart(BaseModel):
    """Payload of a ``session_start`` event."""

    session_id: str = Field(min_length=8, max_length=36)
    avatar_id: str | None = None
    persona_id: str | None = None
    room: str | None = None
    caller_identity: str | None = None
    started_at: datetime | None = None
    meta: dict[str, Any] = {}


class TurnIn(BaseModel):
    """Payload of a ``turn`` event."""

    session_id: str
    turn_id: str | None = None
    seq: int = 0
    speaker: Literal["user", "assistant", "system", "human_agent"]
    text: str = Field(max_length=20_000)
    language: str | None = None
    interrupted: bool = False
    citations: list[Any] = []
    latency: dict[str, float | int | None] = {}
    started_at: datetime | None = None
    ended_at: datetime | None = None


class SessionEnd(BaseModel):
    """Payload of a ``session_end`` event."""

    session_id: str
    ended_at: datetime | None = None
    outcome: Literal["completed", "abandoned", "escalated", "failed"] | None = "completed"
    escalated: bool = False
    escalation_reason: str | None = None
    meta: dict[str, Any] = {}


class Event(BaseModel):
    """One recorder event; ``event_id`` is generated by the client and makes delivery idempotent."""

    event_id: str = Field(min_length=8, max_length=36)
    type: Literal["session_start", "turn", "session_end"]
    payload: dict[str, Any]
    # The call's session grant (dispatch metadata ``session_grant``); required with an agent key.
    grant: str | None = Field(default=None, max_length=512)


class EventBatch(BaseModel):
    """Events in the order they happened."""

    events: list[Event] = Field(max_length=500)


class EventResult(BaseModel):
    """How many events were applied now and how many had already been."""

    applied: int
    duplicates: int


# --- LiveKit ------------------------------------------------------------------------------
class CallTokenRequest(BaseModel):
    """Ask for a token for one caller to talk to one avatar."""

    avatar_id: str
    identity: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=128)
    room: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    ttl_seconds: int = Field(default=600, ge=30)


class CallTokenOut(BaseModel):
    """What a caller needs to join."""

    server_url: str
    token: str
    room: str
    identity: str
    session_id: str
    expires_at: datetime


# --- audit --------------------------------------------------------------------------------
class AuditOut(Out):
    """One audit entry."""

    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    resource: str
    resource_id: str | None
    changes: dict[str, Any]
    client_ip: str | None
    prev_hash: str
    hash: str
