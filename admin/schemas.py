"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator

from admin.models import Role
from admin.persona_settings import PersonaSettings, SettingsField


class Out(BaseModel):
    """Base of response models read from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


def check_storable(value: Any) -> Any:
    """``value`` unchanged if every string in it (nested in lists and objects too) is free of NUL
    characters and every number is finite; ValueError otherwise. No database column stores a NUL
    (PostgreSQL refuses one), and JSON has no NaN or Infinity."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                raise ValueError("must not contain NUL characters")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError("must be a finite number")
        elif isinstance(v, BaseModel):  # a nested model (e.g. persona settings), its extra keys too
            stack.append(dict(v))
        elif isinstance(v, dict):
            for k, item in v.items():
                stack.append(k)
                stack.append(item)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return value


class In(BaseModel):
    """Base of request bodies: every field storable (see :func:`check_storable`).

    Partial-update models declare fields whose column cannot be NULL as ``X = Field(default=None)``
    (not ``X | None``): omitting them keeps the stored value, an explicit ``null`` is a 422.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


def _utc(value: datetime) -> datetime:
    """Timezone-aware UTC (naive means UTC); ValueError when the instant falls outside years 1-9999."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range (years 1 to 9999 in UTC)") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
# Pagination of list routes: bounded, so a huge or negative offset is a 422, never a database error.
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
Lang = Annotated[str, Field(min_length=2, max_length=16)]
Id = Annotated[str, Field(max_length=36)]


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


class TenantCreate(In):
    """A new organisation with its first admin."""

    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    admin_email: EmailStr
    admin_password: str = Field(min_length=10, max_length=200)


class TenantUpdate(In):
    """Changeable organisation fields."""

    name: str = Field(default=None, min_length=1, max_length=200)


class UserOut(Out):
    """A person who signs in."""

    id: str
    tenant_id: str
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    created_at: datetime


class UserCreate(In):
    """A new user of the caller's organisation."""

    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    full_name: str | None = Field(default=None, max_length=200)
    role: Literal["admin", "operator", "viewer"] = "viewer"


class UserUpdate(In):
    """Changeable user fields (admins only)."""

    full_name: str | None = Field(default=None, max_length=200)
    role: Literal["admin", "operator", "viewer"] = Field(default=None)
    is_active: bool = Field(default=None)
    password: str = Field(default=None, min_length=10, max_length=200)


class ApiKeyCreate(In):
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
class PersonaIn(In):
    """Fields of a persona."""

    name: str = Field(min_length=1, max_length=200)
    language: Lang = "en"
    instructions: str = Field(default="", max_length=100_000)
    greeting: str | None = Field(default=None, max_length=20_000)
    disclosure: str | None = Field(default=None, max_length=20_000)
    knowledge_base_id: Id | None = None
    settings: SettingsField = PersonaSettings()


class PersonaUpdate(In):
    """Partial update of a persona."""

    name: str = Field(default=None, min_length=1, max_length=200)
    language: Lang = Field(default=None)
    instructions: str = Field(default=None, max_length=100_000)
    greeting: str | None = Field(default=None, max_length=20_000)
    disclosure: str | None = Field(default=None, max_length=20_000)
    knowledge_base_id: Id | None = None
    settings: SettingsField = Field(default=None)


class PersonaOut(PersonaIn, Out):
    """A persona."""

    settings: dict[str, Any] = {}
    id: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime


Engine = Literal["simple", "portrait", "flashtalk"]


class AvatarIn(In):
    """Fields of an avatar."""

    name: str = Field(min_length=1, max_length=200)
    style: str | None = Field(default=None, max_length=64)
    engine: Engine = "portrait"
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    fps: int = Field(default=25, ge=1, le=60)
    voice: str | None = Field(default=None, max_length=128)
    persona_id: Id | None = None


class AvatarUpdate(In):
    """Partial update of an avatar."""

    name: str = Field(default=None, min_length=1, max_length=200)
    style: str | None = Field(default=None, max_length=64)
    engine: Engine = Field(default=None)
    width: int = Field(default=None, ge=64, le=2048)
    height: int = Field(default=None, ge=64, le=2048)
    fps: int = Field(default=None, ge=1, le=60)
    voice: str | None = Field(default=None, max_length=128)
    persona_id: Id | None = None


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
class KnowledgeBaseIn(In):
    """Fields of a knowledge base."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    language: Lang = "en"


class KnowledgeBaseUpdate(In):
    """Partial update of a knowledge base."""

    name: str = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    language: Lang = Field(default=None)


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
    tool_calls: list[Any]  # a caller's turn: the tools the policy called about it (name, redacted arguments)
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


class SessionStart(In):
    """Payload of a ``session_start`` event."""

    session_id: str = Field(min_length=8, max_length=36)
    avatar_id: Id | None = None
    persona_id: Id | None = None
    room: str | None = Field(default=None, max_length=256)
    caller_identity: str | None = Field(default=None, max_length=256)
    started_at: UtcDatetime | None = None
    meta: dict[str, Any] = {}


class ToolCallIn(In):
    """A tool the policy called about a caller's turn (agent/recorder.py add_turn)."""

    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = {}


class TurnIn(In):
    """Payload of a ``turn`` event."""

    session_id: str = Field(min_length=8, max_length=36)
    turn_id: str | None = Field(default=None, min_length=8, max_length=36)
    seq: int = Field(default=0, ge=0, le=2**31 - 1)
    speaker: Literal["user", "assistant", "system", "human_agent"]
    text: str = Field(max_length=20_000)
    language: str | None = Field(default=None, max_length=16)
    interrupted: bool = False
    citations: list[Any] = []
    tool_calls: list[ToolCallIn] = Field(default=[], max_length=20)
    latency: dict[str, float | int | None] = {}
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None


class SessionEnd(In):
    """Payload of a ``session_end`` event."""

    session_id: str = Field(min_length=8, max_length=36)
    ended_at: UtcDatetime | None = None
    outcome: Literal["completed", "abandoned", "escalated", "escalated_handled", "escalated_unanswered",
                     "failed"] | None = "completed"
    escalated: bool = False
    escalation_reason: str | None = Field(default=None, max_length=20_000)
    meta: dict[str, Any] = {}


class HandoffIn(In):
    """Payload of a ``handoff`` event: the call's handoff changed state (agent/handoff.py)."""

    session_id: str = Field(min_length=8, max_length=36)
    state: Literal["waiting", "accepted", "returned", "unanswered"]
    at: UtcDatetime | None = None
    room: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=2_000)
    summary: str | None = Field(default=None, max_length=20_000)


class Event(BaseModel):
    """One recorder event; ``event_id`` is generated by the client and makes delivery idempotent."""

    event_id: str = Field(min_length=8, max_length=36)
    type: Literal["session_start", "turn", "session_end", "handoff"]
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
class CallTokenRequest(In):
    """Ask for a token for one caller to talk to one avatar."""

    avatar_id: str = Field(max_length=64)
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


class HandoffOut(BaseModel):
    """A call in the handoff queue, with what the colleague needs to take over."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    session_id: str
    room: str | None
    status: str
    reason: str | None
    summary: str | None
    requested_at: datetime
    accepted_at: datetime | None
    accepted_by: str | None
    accepted_by_name: str | None = None  # the colleague who took it (full name, else e-mail)
    operator_joined_at: datetime | None
    ended_at: datetime | None
    waiting_seconds: float
    avatar_id: str | None = None
    caller_identity: str | None = None
    transcript: list[dict[str, Any]] = []


class HandoffAcceptOut(BaseModel):
    """The operator's way into the call."""

    server_url: str
    token: str
    room: str
    identity: str
    expires_at: datetime
    handoff: HandoffOut


class CallKnowledgeOut(BaseModel):
    """The call's knowledge base; ``revision`` is None until its index is built."""

    id: str
    name: str
    revision: str | None
    chunks: int


class CallAvatarOut(BaseModel):
    """The call's avatar; ``revision`` tags its prepared assets (None until prepared)."""

    id: str
    name: str
    engine: str
    status: str
    revision: str | None
    voice: str | None


class CallTurnOut(BaseModel):
    """A turn the call's session already holds (a call resumed by another agent worker continues it)."""

    seq: int
    speaker: str
    text: str
    language: str | None


class CallConfigOut(BaseModel):
    """What one call runs with (``GET /agent/calls/{ticket}``)."""

    session_id: str
    session_grant: str
    organisation: str
    persona: dict[str, Any] | None
    persona_id: str | None
    knowledge: CallKnowledgeOut | None
    avatar: CallAvatarOut | None
    voices: dict[str, str]  # language -> voice name (agent.voices); languages not named: the default voice
    fallbacks: list[str]
    history: list[CallTurnOut] = []  # the session's latest turns so far, oldest first (empty for a new call)


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
