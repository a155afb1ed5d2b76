"""The policy seam: given the conversation, stream what to say (and which tools to call)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from .types import Message, ReplyEvent, ToolSpec


class PolicyError(RuntimeError):
    """The policy could not answer (LLM down, timeout, malformed reply)."""


class Policy(ABC):
    """Decides what the agent says next."""

    name: str = "policy"

    @abstractmethod
    def respond(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to the last user message as TextDelta / ToolCall events."""

    async def aclose(self) -> None:
        """Release clients and models."""
