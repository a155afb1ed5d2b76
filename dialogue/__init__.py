"""What to say: the dialogue policy. Imports nothing from agent/, avatar/, admin/ or LiveKit.

The agent builds one policy per call with :func:`load_policy`; the persona,
the knowledge index and the embedding model behind it are loaded once per
process and shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from .grounded import GroundedPolicy
from .guardrails import redact, speakable
from .knowledge import Chunk, KnowledgeIndex, build_index, ingest_document
from .language import detect_language
from .persona import Persona, load_persona
from .policy import Policy, PolicyError
from .settings import DialogueSettings
from .tools import CORE_TOOLS, DeploymentTool, ToolRegistry, load_registry
from .types import Message, ReplyEvent, TextDelta, ToolCall, ToolSpec, TurnRecord

_lock = threading.Lock()
_indexes: dict[tuple, KnowledgeIndex] = {}


def load_knowledge(settings: DialogueSettings | None = None, persona: Persona | None = None) -> KnowledgeIndex:
    """The knowledge index for these settings (cached per process).

    A persisted index (``DIALOGUE_KNOWLEDGE_DIR``) wins; otherwise the persona's
    knowledge sources plus ``DIALOGUE_KNOWLEDGE_SOURCES`` are ingested.
    """
    s = settings or DialogueSettings()
    p = persona or load_persona(s.persona_file)
    extra = [x.strip() for x in s.knowledge_sources.split(",") if x.strip()]
    key = (s.knowledge_dir, tuple(map(str, p.knowledge_paths())), tuple(extra), s.embedding_model)
    with _lock:
        if key not in _indexes:
            from .knowledge import Embedder

            emb = Embedder.shared(s.embedding_model or None)
            if s.knowledge_dir:
                _indexes[key] = KnowledgeIndex.load(s.knowledge_dir, emb)
            else:
                _indexes[key] = KnowledgeIndex.from_paths([*p.knowledge_paths(), *map(Path, extra)], emb)
        return _indexes[key]


def load_policy(settings: DialogueSettings | None = None, *, persona: Persona | None = None,
                index: KnowledgeIndex | None = None, registry: ToolRegistry | None = None,
                on_turn: Callable[[TurnRecord], None] | None = None) -> GroundedPolicy:
    """The policy for one call: grounded on the persona's knowledge, with an LLM when a base URL is set.

    With no ``DIALOGUE_LLM_BASE_URL`` the answers come from retrieval and
    templates (no LLM server needed). ``persona``/``index``/``registry`` override
    what the settings name (e.g. a persona fetched from the admin backend).
    """
    s = settings or DialogueSettings()
    p = persona or load_persona(s.persona_file)
    idx = index or load_knowledge(s, p)
    reg = registry if registry is not None else load_registry(s.tools)
    llm = None
    if s.llm_base_url:
        from .openai_policy import OpenAIPolicy

        llm = OpenAIPolicy(base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key,
                           timeout=s.llm_timeout, max_tokens=s.llm_max_tokens)
    return GroundedPolicy(p, idx, llm=llm, registry=reg, on_turn=on_turn, llm_retries=s.llm_retries,
                          llm_core_tools=s.llm_core_tools)


def greeting(settings: DialogueSettings | None = None, language: str | None = None) -> str:
    """The opening line of a call, in ``language`` (the persona's default when None)."""
    s = settings or DialogueSettings()
    return load_persona(s.persona_file).greeting_for(language)


__all__ = [
    "CORE_TOOLS", "Chunk", "DeploymentTool", "DialogueSettings", "GroundedPolicy", "KnowledgeIndex",
    "Message", "Persona", "Policy", "PolicyError", "ReplyEvent", "TextDelta", "ToolCall", "ToolRegistry", "ToolSpec",
    "TurnRecord", "build_index", "detect_language", "greeting", "ingest_document", "load_knowledge", "load_persona",
    "load_policy", "load_registry", "redact", "speakable",
]
