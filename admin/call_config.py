"""What one call runs with, as the admin stores it: the persona in the shape
:class:`dialogue.persona.Persona` reads, and version tags of the knowledge index and the avatar's
prepared assets (the agent and the avatar worker cache by them).

Kept apart from the routes so the console's preview and the call use the same mapping.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status

from admin.core.config import get_settings
from admin.models import Avatar, JobStatus, KnowledgeBase, Persona, Tenant

# Keys of ``Persona.settings`` the dialogue persona reads as they are (validated by admin.persona_settings).
_PASS_THROUGH = ("tone", "allowed_topics", "forbidden_topics", "escalation", "max_unanswered", "phrases", "intents")
# The files of a knowledge index (dialogue.knowledge.KnowledgeIndex.save).
INDEX_FILES = ("chunks.jsonl", "embeddings.npy", "meta.json")


def dialogue_persona(persona: Persona, tenant: Tenant) -> dict[str, Any]:
    """The persona as ``dialogue.persona.Persona.model_validate`` takes it.

    The greeting column is the greeting in the persona's language (with the disclosure, e.g.
    "this call is recorded", spoken after it); ``settings.greeting`` adds other languages.
    """
    st = persona.settings or {}
    lang = persona.language or "en"
    greeting = {k: v for k, v in (st.get("greeting") or {}).items() if isinstance(v, str) and v.strip()}
    if persona.greeting and persona.greeting.strip():
        greeting[lang] = persona.greeting.strip()
    if not greeting:
        greeting[lang] = f"Hello, I am {persona.name}. How can I help you?"
    if persona.disclosure and persona.disclosure.strip():
        greeting = {k: f"{v} {persona.disclosure.strip()}" for k, v in greeting.items()}
    languages = [x for x in st.get("languages") or [] if isinstance(x, str)] or ["en", "zh"]
    languages = [lang, *[x for x in languages if x != lang]]
    out: dict[str, Any] = {
        "id": persona.id, "name": persona.name, "organisation": tenant.name, "greeting": greeting,
        "languages": languages, "default_language": lang,
    }
    out.update({k: st[k] for k in _PASS_THROUGH if st.get(k) is not None})
    return out


def index_revision(kb: KnowledgeBase) -> str | None:
    """A tag that changes whenever the knowledge base's index folder is rebuilt; None without one."""
    folder = Path(kb.index_dir) if kb.index_dir else None
    if folder is None or not (folder / "chunks.jsonl").is_file():
        return None
    h = hashlib.sha256(kb.id.encode())
    for name in INDEX_FILES:
        p = folder / name
        if p.is_file():
            st = p.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:32]


def avatar_ready(avatar: Avatar) -> bool:
    return avatar.status == JobStatus.ready and bool(avatar.assets_dir) and Path(avatar.assets_dir).is_dir()


def avatar_revision(avatar: Avatar) -> str | None:
    """The prepared assets' tag (the fingerprint of the inputs they were prepared from)."""
    if not avatar_ready(avatar):
        return None
    return (avatar.prepared_for or "")[:32] or None


def tar_folder(folder: Path, names: tuple[str, ...] | None = None) -> bytes:
    """The regular files directly in ``folder`` (or only ``names``) as an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.is_symlink() and (names is None or p.name in names):
                tar.add(p, arcname=p.name, recursive=False)
    return buf.getvalue()


def check_voice(language: str, name: str | None, field: str) -> None:
    """422 naming ``field`` when ``name`` is not a voice this deployment has (agent.voices)."""
    if not name:
        return
    from agent.voices import problem

    why = problem(language, name, get_settings().models_dir)
    if why:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{field}: {why}")


def check_persona_voices(settings: dict[str, Any] | None) -> None:
    voices = (settings or {}).get("voices")
    if voices is None:
        return
    if not isinstance(voices, dict) or not all(isinstance(v, str) for v in voices.values()):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            'settings.voices: give a voice name per language, e.g. {"en": "espeak", "zh": "zh-baker"}')
    for lang, name in voices.items():
        check_voice(lang, name, f"settings.voices.{lang}")


def call_voices(avatar: Avatar | None, persona: Persona | None) -> dict[str, str]:
    """The voice per language a call speaks with: the persona's ``settings.voices``, and the
    avatar's ``voice`` for English; languages not named use the deployment's default voice."""
    out = {k: v for k, v in ((persona.settings or {}).get("voices") or {}).items() if isinstance(v, str) and v} \
        if persona is not None else {}
    if avatar is not None and avatar.voice:
        out["en"] = avatar.voice
    return out
