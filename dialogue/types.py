"""Plain data types of the dialogue policy (no LiveKit, no agent code)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class Message:
    """One message of the conversation as the policy sees it."""

    role: Role
    content: str
    name: str | None = None  # tool name for role="tool"


@dataclass
class ToolSpec:
    """A tool the policy may call: name, description and JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class TextDelta:
    """A piece of the spoken answer, streamed as it is produced."""

    text: str


@dataclass
class ToolCall:
    """The policy asks the agent to run a tool."""

    name: str
    arguments: dict[str, Any]
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


ReplyEvent = TextDelta | ToolCall


@dataclass
class TurnRecord:
    """The audit record of one turn: what was heard, retrieved, decided and said (all redacted).

    ``decision`` is one of: answer, no_answer, refuse_scope, refuse_injection,
    escalate, ticket, end_call, tool, tool_result, offer_declined, llm_error, not_heard.
    """

    turn: int
    language: str
    user: str  # the caller's words, PII redacted
    decision: str
    reply: str = ""  # what was said, PII redacted
    citations: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    policy: str = ""
    model: str = ""
    error: str | None = None
    latency_ms: float = 0.0
    at: str = ""  # ISO time, UTC
