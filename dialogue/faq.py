"""Offline FAQ responder: answers from a small knowledge file, no LLM needed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from .policy import Policy
from .types import Message, ReplyEvent, TextDelta, ToolSpec

DEFAULT_KNOWLEDGE = Path(__file__).with_name("data") / "faq.yaml"
_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no topic; kept short on purpose (the FAQ file lists its own keywords).
_STOP = frozenset("a an the is are do does i you your we our to of for in on at my me can how what when where".split())


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str
    keywords: frozenset[str]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class FaqPolicy(Policy):
    """Picks the FAQ entry whose keywords best match the caller's last utterance."""

    name = "faq"

    def __init__(self, knowledge_file: str | Path = DEFAULT_KNOWLEDGE) -> None:
        path = Path(knowledge_file)
        if not path.is_file():
            raise FileNotFoundError(f"knowledge file not found: {path} (set DIALOGUE_KNOWLEDGE_FILE)")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        self.greeting: str = data.get("greeting", "Hello, how can I help you?")
        self.fallback: str = data.get(
            "fallback", "Sorry, I don't have an answer to that. Would you like me to connect you to a person?"
        )
        self.entries = [
            FaqEntry(
                question=e["question"],
                answer=e["answer"],
                keywords=frozenset(w.lower() for w in e.get("keywords", [])) | frozenset(_words(e["question"])),
            )
            for e in data.get("faq", [])
        ]

    def best_entry(self, text: str) -> FaqEntry | None:
        words = _words(text)
        scored = [(len(words & e.keywords), e) for e in self.entries]
        scored = [(s, e) for s, e in scored if s > 0]
        if not scored:
            return None
        return max(scored, key=lambda se: se[0])[1]

    async def respond(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> AsyncIterator[ReplyEvent]:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        entry = self.best_entry(last_user)
        answer = entry.answer if entry else self.fallback
        # Stream sentence by sentence so TTS can start on the first one.
        for sentence in re.split(r"(?<=[.!?])\s+", answer.strip()):
            if sentence:
                yield TextDelta(sentence + " ")
