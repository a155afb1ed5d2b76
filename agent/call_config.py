"""What one call runs with, from the admin API: the operator's persona, knowledge and face.

The caller's token carries only an opaque ticket (``{"ticket": ...}`` in the dispatch metadata).
At the start of a call the agent exchanges it, with its agent key (``DH_ADMIN_URL``,
``DH_ADMIN_API_KEY``), for the call's session and grant, the avatar's persona and the version tag
of its knowledge index (``GET /api/v1/agent/calls/{ticket}``); the avatar worker fetches the
prepared face the same way with its worker key. Indexes and assets are cached on disk and in
memory by version tag, so a second call downloads nothing and an edit in the admin reaches the
next call without a restart.

Every failure gives a working call and one log line saying why:

* no ticket, no admin configured, admin unreachable, unknown ticket, a persona that does not
  validate: the deployment's default persona and knowledge (``DIALOGUE_*``), not recorded when
  there is no grant;
* the avatar has no persona: the default persona, but never the default knowledge -- a call of
  an organisation answers only from that organisation's knowledge;
* the persona has no knowledge index, or it cannot be fetched: an empty index (the agent says
  it has no approved information and offers a person).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tarfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .contract import AvatarDispatch, CallDispatch
from .paths import cache_root

logger = logging.getLogger("agent.call_config")

API = "/api/v1/agent/calls"
_MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a prepared FlashTalk face is tens of MB; an index a few


@dataclass
class CallConfig:
    """The call's own set-up; ``persona``/``index`` None mean the deployment's default."""

    ticket: str | None = None
    session_id: str | None = None
    grant: str | None = None
    persona: Any = None  # dialogue.Persona
    index: Any = None  # dialogue.knowledge.KnowledgeIndex
    avatar: dict[str, Any] = field(default_factory=dict)  # id, engine, revision, voice
    voices: dict[str, str] = field(default_factory=dict)  # language -> voice name (agent.voices)
    from_admin: bool = False
    reasons: list[str] = field(default_factory=list)  # what fell back to a default, and why
    history: list[dict[str, Any]] = field(default_factory=list)  # the session's turns so far (a resumed call)

    def recorder_meta(self) -> dict[str, Any]:
        """What :func:`agent.recorder.recorder_for_call` reads."""
        return {"session_id": self.session_id, "session_grant": self.grant}

    def avatar_metadata(self) -> dict[str, Any]:
        """The avatar worker's dispatch metadata (set by the agent through the LiveKit API, not seen by callers)."""
        out = {k: self.avatar.get(k) for k in ("id", "engine", "revision") if self.avatar.get(k)}
        out = {("avatar_id" if k == "id" else k): v for k, v in out.items()}
        if self.ticket and self.avatar.get("revision"):
            out["ticket"] = self.ticket
        return out


class AdminClient:
    """The admin API as a machine sees it: one key, short timeouts, one retry on a network error."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key}
        self.timeout = timeout

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
            for attempt in (1, 2):
                try:
                    return await client.get(path, headers={**self._headers, **(headers or {})})
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.3)
        raise AssertionError("unreachable")


class BundleCache:
    """Folders fetched as tars from the admin, kept on disk under ``root/kind/name/revision``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else cache_root() / "calls"

    def folder(self, kind: str, name: str, revision: str) -> Path:
        safe = lambda s: "".join(c for c in s if c.isalnum() or c in "-_")[:80] or "x"  # noqa: E731
        return self.root / kind / safe(name) / safe(revision)

    async def fetch(self, client: AdminClient, path: str, kind: str, name: str, revision: str) -> Path:
        """The folder for ``revision``: on disk already, or downloaded from ``path`` and unpacked."""
        dest = self.folder(kind, name, revision)
        if dest.is_dir():
            return dest
        # Two calls starting together may both download; each unpacks aside and renames, the
        # second finds the folder there and drops its copy (calls are threads with their own loops).
        r = await client.get(path)
        if r.status_code != 200:
            raise RuntimeError(f"{path} answered {r.status_code}: {_detail(r)}")
        if len(r.content) > _MAX_BUNDLE_BYTES:
            raise RuntimeError(f"{path} sent {len(r.content)} bytes, more than a call's files may be")
        got = r.headers.get("etag", "").strip('"')
        if got and got != revision:  # changed between the two requests: cache it under what it is
            dest = self.folder(kind, name, got)
        await asyncio.to_thread(_unpack, r.content, dest)
        self._prune(dest.parent, keep=dest.name)
        return dest

    @staticmethod
    def _prune(parent: Path, keep: str, keep_last: int = 2) -> None:
        """Old revisions of one item go; the newest few stay (a call still using one is unaffected)."""
        olds = sorted((p for p in parent.iterdir() if p.is_dir() and p.name != keep and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for p in olds[keep_last - 1:]:
            shutil.rmtree(p, ignore_errors=True)


def _unpack(data: bytes, dest: Path) -> None:
    """Regular files only, no paths (a tar naming ``../x`` or a link is refused); atomic rename."""
    import io

    tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar.getmembers():
                if not m.isfile() or "/" in m.name or "\\" in m.name or m.name in ("", ".", ".."):
                    raise RuntimeError(f"refusing tar member {m.name!r}")
                src = tar.extractfile(m)
                assert src is not None
                (tmp / m.name).write_bytes(src.read())
        if dest.exists():
            shutil.rmtree(tmp)
            return
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail"))[:200]
    except Exception:
        return r.text[:200]


# --------------------------------------------------------------------------- knowledge indexes
_indexes: OrderedDict[tuple[str, str], Any] = OrderedDict()
_indexes_lock = threading.Lock()
_KEEP_INDEXES = 16  # organisations' indexes kept loaded in one worker


def load_index(folder: Path | str, tag: str, embedding_model: str | None) -> Any:
    """A knowledge index folder as a call uses it: the process's shared embedder, and ``tag`` (the
    knowledge base and its revision) as the version the meaning layer caches its embeddings by."""
    from dialogue.knowledge import Embedder, KnowledgeIndex

    index = KnowledgeIndex.load(folder, Embedder.shared(embedding_model or None))
    index.revision = tag  # the meaning layer caches its embeddings by this (dialogue.understanding)
    return index


def loaded_index(key: tuple[str, str]) -> Any | None:
    """The index of (knowledge base id, revision) if this process has it loaded (most recent first)."""
    with _indexes_lock:
        if key in _indexes:
            _indexes.move_to_end(key)
            return _indexes[key]
    return None


def keep_index(key: tuple[str, str], index: Any) -> Any:
    """Keep ``index`` loaded for (knowledge base id, revision); the least recently used go past the limit."""
    with _indexes_lock:
        _indexes[key] = index
        while len(_indexes) > _KEEP_INDEXES:
            _indexes.popitem(last=False)
    return index


def empty_index(embedding_model: str | None = None) -> Any:
    """An index with nothing in it: every question is one it has no approved answer to."""
    import numpy as np

    from dialogue.knowledge import KnowledgeIndex

    # no passage is ever compared, so no embedding model is loaded for it
    index = KnowledgeIndex([], np.zeros((0, 384), np.float32))
    index.revision = "empty"
    return index


async def _knowledge(client: AdminClient, cache: BundleCache, ticket: str, kb: dict[str, Any],
                     embedding_model: str | None) -> Any:
    key = (kb["id"], kb["revision"])
    if (index := loaded_index(key)) is not None:
        return index
    folder = await cache.fetch(client, f"{API}/{ticket}/knowledge", "knowledge", kb["id"], kb["revision"])
    return keep_index(key, await asyncio.to_thread(load_index, folder, f"{kb['id']}:{kb['revision']}", embedding_model))


async def resolve_call(meta: dict[str, Any], *, admin_url: str, api_key: str, cache_dir: Path | None = None,
                       embedding_model: str | None = None, timeout: float = 5.0) -> CallConfig:
    """The call's configuration for the dispatch metadata ``meta``; never raises (see the module doc)."""
    from dialogue import load_persona

    cfg = CallConfig(ticket=CallDispatch.from_metadata(meta).ticket)

    def fallback(why: str) -> CallConfig:
        cfg.reasons.append(why)
        logger.warning("call set-up: %s", "; ".join(cfg.reasons))
        return cfg

    if not cfg.ticket:
        return fallback("no call ticket in the dispatch metadata: the default persona and knowledge, not recorded")
    if not (admin_url.strip() and api_key.strip()):
        return fallback("DH_ADMIN_URL/DH_ADMIN_API_KEY not set: the default persona and knowledge, not recorded")
    client = AdminClient(admin_url, api_key, timeout=timeout)
    try:
        r = await client.get(f"{API}/{cfg.ticket}")
    except httpx.HTTPError as e:
        return fallback(f"the admin at {admin_url} is unreachable ({type(e).__name__}): the default persona and "
                        "knowledge, not recorded")
    if r.status_code != 200:
        return fallback(f"the admin refused the call ticket ({r.status_code}: {_detail(r)}): the default persona "
                        "and knowledge, not recorded")
    body = r.json()
    cfg.session_id, cfg.grant = body.get("session_id"), body.get("session_grant")
    cfg.avatar = dict(body.get("avatar") or {})
    cfg.voices = {k: v for k, v in (body.get("voices") or {}).items() if isinstance(v, str)}
    cfg.from_admin = True
    cfg.reasons.extend(body.get("fallbacks") or [])
    cfg.history = [t for t in body.get("history") or [] if isinstance(t, dict) and t.get("text")]
    if body.get("persona") is not None:
        try:
            cfg.persona = load_persona(body["persona"])
        except Exception as e:  # a stored persona the dialogue cannot read
            cfg.reasons.append(f"persona '{body.get('persona_id')}' is not valid ({str(e)[:120]}): the default persona")
    # the knowledge of this organisation only: its own index, or none at all
    kb = body.get("knowledge")
    if kb and kb.get("revision"):
        try:
            cfg.index = await _knowledge(client, BundleCache(cache_dir), cfg.ticket, kb, embedding_model)
        except Exception as e:
            cfg.reasons.append(f"knowledge base '{kb.get('name')}' could not be loaded ({str(e)[:160]}): no approved answers")
    elif kb:
        cfg.reasons.append(f"knowledge base '{kb.get('name')}' has no index yet (no document ingested): no approved answers")
    else:
        cfg.reasons.append("the persona has no knowledge base: no approved answers")
    if cfg.index is None:
        cfg.index = await asyncio.to_thread(empty_index, embedding_model)
    logger.info("call set-up from the admin: %s, persona %s, knowledge %s (%d passages), voices %s%s",
                body.get("organisation"), cfg.persona.name if cfg.persona else "default",
                (kb or {}).get("name", "none"), len(cfg.index.chunks), cfg.voices or "default",
                f"; {'; '.join(cfg.reasons)}" if cfg.reasons else "",
                extra={"session_id": cfg.session_id, "avatar_id": cfg.avatar.get("id")})
    return cfg


async def fetch_avatar_assets(meta: AvatarDispatch, *, admin_url: str, api_key: str,
                              cache_dir: Path | None = None, timeout: float = 10.0) -> Path | None:
    """The avatar worker's side: the call's prepared face folder, or None (with one log line) when
    the metadata names none or it cannot be fetched -- the worker then shows its default face."""
    ticket, avatar_id, revision = meta.ticket, meta.avatar_id, meta.revision
    if not (ticket and avatar_id and revision):
        return None
    if not (admin_url.strip() and api_key.strip()):
        logger.warning("the call names avatar %s but AVATAR_ADMIN_URL/AVATAR_ADMIN_API_KEY are not set: the default face",
                       avatar_id)
        return None
    cache = BundleCache(cache_dir)
    try:
        return await cache.fetch(AdminClient(admin_url, api_key, timeout=timeout), f"{API}/{ticket}/avatar",
                                 "avatars", str(avatar_id), str(revision))
    except Exception as e:
        logger.warning("avatar %s assets could not be fetched (%s): the default face", avatar_id, str(e)[:200])
        return None
