"""The structured part of a persona's ``settings``: what :class:`dialogue.persona.Persona` reads
(tone, greeting per language, allowed and forbidden topics, escalation rules), validated when a
persona is written so that a mistake is reported on its field (e.g. ``settings.escalation.0.reason``)
instead of surfacing in a call. Other keys are kept as they are."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, field_validator

Lang = str
MAX_EXAMPLES = 50  # example phrases per language of one topic or rule (each one is embedded for the call)
# What a caller might say, matched by meaning (dialogue.understanding): one sentence, not a document.
Example = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Examples = dict[Lang, Annotated[list[Example], Field(max_length=MAX_EXAMPLES)]]


def _clean_words(v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
    out = {lang: [w.strip() for w in words if w.strip()] for lang, words in v.items()}
    return {lang: words for lang, words in out.items() if words}


def _check_lang(lang: str) -> None:
    if not (2 <= len(lang) <= 8) or not lang.replace("-", "").isalpha():
        raise ValueError(f"'{lang}' is not a language code (e.g. en, zh)")


def _clean_examples(v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
    """Example phrases per language without blanks and repeats (languages without any are dropped)."""
    for lang in v:
        _check_lang(lang)
    return {lang: list(dict.fromkeys(x for x in phrases if x)) for lang, phrases in v.items() if any(phrases)}


class TopicSettings(BaseModel):
    """A topic the agent declines, the words that reveal it and what it says instead."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    keywords: dict[Lang, list[str]] = Field(min_length=1)
    examples: Examples = {}  # what a caller might say about it: matched by meaning
    reply: dict[Lang, str] = {}

    @field_validator("keywords")
    @classmethod
    def _words(cls, v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
        return _require_words(v)

    @field_validator("examples")
    @classmethod
    def _examples(cls, v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
        return _clean_examples(v)


class EscalationSettings(BaseModel):
    """When a person takes over: trigger words and the reason recorded on the call."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200)
    keywords: dict[Lang, list[str]] = Field(min_length=1)
    examples: Examples = {}  # what a caller might say when it applies: matched by meaning

    @field_validator("keywords")
    @classmethod
    def _words(cls, v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
        return _require_words(v)

    @field_validator("examples")
    @classmethod
    def _examples(cls, v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
        return _clean_examples(v)


def _require_words(v: dict[Lang, list[str]]) -> dict[Lang, list[str]]:
    cleaned = _clean_words(v)
    if not cleaned:
        raise ValueError("give at least one trigger word")
    return cleaned


class PersonaSettings(BaseModel):
    """Validated keys of ``Persona.settings``; unknown keys pass through."""

    model_config = ConfigDict(extra="allow")
    tone: str | None = Field(default=None, max_length=300)
    greeting: dict[Lang, str] | None = None
    allowed_topics: list[str] | None = Field(default=None, max_length=100)
    forbidden_topics: list[TopicSettings] | None = Field(default=None, max_length=100)
    escalation: list[EscalationSettings] | None = Field(default=None, max_length=100)
    max_unanswered: int | None = Field(default=None, ge=1, le=20)
    voices: dict[Lang, str] | None = None  # voice name per language (agent/voices.py), checked by the routes

    @field_validator("greeting")
    @classmethod
    def _greetings(cls, v: dict[Lang, str] | None) -> dict[Lang, str] | None:
        if v is None:
            return v
        for lang, text in v.items():
            _check_lang(lang)
            if len(text) > 500:
                raise ValueError(f"the {lang} greeting is longer than 500 characters")
        return {lang: text.strip() for lang, text in v.items() if text.strip()}

    @field_validator("allowed_topics")
    @classmethod
    def _topics(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [t.strip() for t in v if t.strip()]


# The type of ``settings`` in persona request bodies: validated, stored without the unset keys.
SettingsField = Annotated[PersonaSettings, PlainSerializer(lambda s: s.model_dump(exclude_none=True))]
