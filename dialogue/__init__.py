"""What to say: the dialogue policy. Imports nothing from agent/, avatar/, admin/ or LiveKit."""

from __future__ import annotations

from .faq import FaqPolicy
from .policy import Policy, PolicyError
from .settings import DialogueSettings
from .types import Message, ReplyEvent, TextDelta, ToolCall, ToolSpec


def load_policy(settings: DialogueSettings | None = None) -> Policy:
    """The configured policy: the OpenAI-compatible one when a base URL is set, else the offline FAQ."""
    s = settings or DialogueSettings()
    if s.llm_base_url:
        from .openai_policy import OpenAIPolicy

        return OpenAIPolicy(
            base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key,
            system_prompt=s.system_prompt, timeout=s.llm_timeout,
        )
    return FaqPolicy(s.knowledge_file)


def greeting(settings: DialogueSettings | None = None) -> str:
    """The opening line of a call."""
    s = settings or DialogueSettings()
    return FaqPolicy(s.knowledge_file).greeting


__all__ = [
    "DialogueSettings", "FaqPolicy", "Message", "Policy", "PolicyError", "ReplyEvent",
    "TextDelta", "ToolCall", "ToolSpec", "greeting", "load_policy",
]
