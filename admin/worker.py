"""Celery app and background tasks: avatar preparation, knowledge ingestion,
session post-processing.

Broker: Redis in deployment (``ADMIN_BROKER_URL=redis://...``); by default
kombu's SQLAlchemy transport on an SQLite file, so a laptop needs no extra
server. Tasks acknowledge late (a worker killed mid-task leaves the message
for another), retry transient failures with backoff, and are idempotent: each
compares a fingerprint of its inputs with what was last produced. Progress is
written to the row the task works on, where the API reads it.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, OperationalError

from admin.core.config import get_settings
from admin.core.db import session_scope
from admin.ingest import (  # noqa: F401  (simple_chunks re-exported)
    IngestLimitError,
    build_index,
    plain_ingestor,
    simple_chunks,
)
from admin.models import Avatar, CallSession, Document, DocumentChunk, JobStatus, KnowledgeBase, Turn, utcnow
from dialogue.guardrails import find_pii, redact

logger = logging.getLogger("admin.worker")

GPU_ENGINES = {"flashtalk"}
TRANSIENT = (OperationalError, DBAPIError, ConnectionError, TimeoutError)


def make_celery() -> Celery:
    """Build the Celery app from the admin settings."""
    s = get_settings()
    app = Celery("admin", broker=s.celery_broker_url, include=["admin.worker"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="default",
        task_always_eager=s.celery_eager,
        task_eager_propagates=False,
        broker_connection_retry_on_startup=True,
        # Redis redelivers an unacknowledged task after this long (acks_late); the SQLAlchemy
        # transport passes its options to create_engine, so it gets none.
        broker_transport_options={"visibility_timeout": 3600} if s.celery_broker_url.startswith("redis") else {},
        worker_hijack_root_logger=False,
    )
    return app


celery_app = make_celery()


def queue_for_engine(engine: str) -> str:
    """GPU engines are prepared by workers listening on the ``gpu`` queue."""
    return "gpu" if engine in GPU_ENGINES else "default"


# --- avatar preparation -------------------------------------------------------------------
def _avatar_fingerprint(a: Avatar) -> str:
    key = f"{a.portrait_sha256}|{a.engine}|{a.width}x{a.height}@{a.fps}"
    return hashlib.sha256(key.encode()).hexdigest()


def _set(model: type, obj_id: str, **fields: Any) -> None:
    with session_scope() as db:
        obj = db.get(model, obj_id)
        if obj is not None:
            for k, v in fields.items():
                setattr(obj, k, v)


def prepare_avatar_job(avatar_id: str) -> str:
    """Run the engine's preparation of an avatar's portrait; returns the final status."""
    import numpy as np
    from PIL import Image

    with session_scope() as db:
        a = db.get(Avatar, avatar_id)
        if a is None or not a.portrait_path:
            return "missing"
        fingerprint = _avatar_fingerprint(a)
        if a.status == JobStatus.ready and a.prepared_for == fingerprint and a.assets_dir and Path(a.assets_dir).is_dir():
            return "ready"  # already prepared for exactly these inputs
        engine, portrait, settings = a.engine, Path(a.portrait_path), {"width": a.width, "height": a.height, "fps": a.fps}
        voice = a.voice
        final_dir = portrait.parent / f"assets-{engine}-{fingerprint[:12]}"
        a.status, a.progress, a.status_detail = JobStatus.running.value, 0.1, None

    from avatar.engines import PreparationError, prepare_avatar  # the engines are heavy: import on use

    image = np.asarray(Image.open(portrait).convert("RGB"), dtype=np.uint8)
    # Prepare into a scratch directory and rename: a retried or concurrent run never sees half an asset set.
    tmp_dir = final_dir.with_name(f".tmp-{uuid.uuid4().hex}")
    tmp_dir.mkdir(parents=True)
    try:
        _set(Avatar, avatar_id, progress=0.2)
        meta = prepare_avatar(engine, image, tmp_dir, **settings)
    except PreparationError as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        _set(Avatar, avatar_id, status=JobStatus.failed.value, status_detail=str(exc), progress=1.0)
        return "failed"
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    _set(Avatar, avatar_id, progress=0.8)
    meta = dict(meta or {})
    meta["preview"] = render_avatar_preview(engine, tmp_dir, voice, settings)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp_dir.rename(final_dir)
    _set(
        Avatar, avatar_id, status=JobStatus.ready.value, progress=1.0, assets_dir=str(final_dir),
        prepared_for=fingerprint, prep_metadata=_jsonable(meta), status_detail=None,
    )
    return "ready"


PREVIEW_FILE = "preview.mp4"


def render_avatar_preview(engine: str, assets_dir: Path, voice: str | None, size: dict[str, int]) -> dict[str, Any]:
    """``assets_dir/preview.mp4``: the prepared face saying a sentence in the avatar's voice, rendered by
    the call's own path (avatar/preview.py). What happened, for ``prep_metadata["preview"]``; a preview
    that cannot be made never fails the avatar."""
    s = get_settings()
    if s.avatar_preview == "off" or (s.avatar_preview == "cpu" and engine in GPU_ENGINES):
        return {"status": "skipped", "detail": f"ADMIN_AVATAR_PREVIEW={s.avatar_preview} renders none for {engine}"}
    from agent.settings import AgentSettings
    from agent.voices import ESPEAK

    models = Path(s.models_dir)
    default_voice = models / AgentSettings.model_fields["piper_voice"].default  # the agent's own default
    voice_path = models / voice if voice and voice != ESPEAK and voice.endswith(".onnx") else default_voice
    if not voice_path.is_file():
        voice_path = default_voice
    if not voice_path.is_file():
        return {"status": "skipped", "detail": f"no English voice in the models folder {models}"}
    try:
        from agent.tts import speak
        from avatar.preview import PREVIEW_TEXT, render_preview

        p = render_preview(engine, assets_dir, assets_dir / PREVIEW_FILE, speak(PREVIEW_TEXT["en"], voice_path), 16000,
                           **size)
    except Exception as exc:  # the avatar itself is ready: say why its clip is missing
        logger.exception("avatar preview failed")
        return {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
    return {"status": "ready", "voice": voice_path.relative_to(models).as_posix(), **p.as_dict()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# --- knowledge ingestion ------------------------------------------------------------------
def load_ingestor() -> Any:
    """The configured ``module:function`` ingestor (default :func:`admin.ingest.dialogue_ingestor`).

    Contract: ``fn(path: Path, *, document_id, filename, content_type, language) -> list[dict]``
    with keys ``text``, optional ``embedding`` (list of floats) and ``meta`` (dict).
    """
    target = get_settings().knowledge_ingestor
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        logger.warning("knowledge ingestor %s not available; using the plain paragraph chunker", target)
        return plain_ingestor


def ingest_document_job(document_id: str, language: str = "en") -> str:
    """Chunk and embed one document, then rebuild its knowledge base's index; returns the final status."""
    with session_scope() as db:
        doc = db.get(Document, document_id)
        if doc is None:
            return "missing"
        if doc.status == JobStatus.ready and doc.ingested_sha256 == doc.sha256:
            return "ready"
        doc.status, doc.progress, doc.status_detail = JobStatus.running.value, 0.1, None
        path, ctype, filename, tenant_id = Path(doc.path), doc.content_type, doc.filename, doc.tenant_id
        sha, kb_id = doc.sha256, doc.knowledge_base_id
    max_chunks = get_settings().max_document_chunks
    try:
        chunks = load_ingestor()(path, document_id=document_id, filename=filename, content_type=ctype,
                                 language=language)
        if len(chunks) > max_chunks:  # whatever the ingestor, a document never floods the index
            raise IngestLimitError(f"The document makes {len(chunks)} passages, more than the limit of {max_chunks}; "
                                   "split it into smaller documents.")
    except TRANSIENT:
        raise
    except IngestLimitError as exc:  # a bound of ingestion: the sentence says which and what to do
        logger.warning("ingestion of %s stopped: %s", document_id, exc)
        _set(Document, document_id, status=JobStatus.failed.value, progress=1.0, status_detail=str(exc))
        return "failed"
    except Exception as exc:  # a document the ingestor cannot read is the user's to fix, not ours to retry
        logger.exception("ingestion of %s failed", document_id)
        _set(Document, document_id, status=JobStatus.failed.value, progress=1.0,
             status_detail=f"Could not read the document: {exc}")
        return "failed"
    _set(Document, document_id, progress=0.7)
    with session_scope() as db:
        # Replace, never append: a retried run leaves exactly one set of chunks.
        db.execute(delete(DocumentChunk).where(DocumentChunk.document_id == document_id))
        for i, c in enumerate(chunks):
            emb = c.get("embedding")
            db.add(DocumentChunk(
                tenant_id=tenant_id, document_id=document_id, ordinal=i, text=c["text"],
                meta=_jsonable(c.get("meta") or {}), embedding=[float(x) for x in emb] if emb is not None else None,
            ))
        doc = db.get(Document, document_id)
        doc.status, doc.progress, doc.chunk_count, doc.ingested_sha256 = JobStatus.ready.value, 1.0, len(chunks), sha
    rebuild_kb_index(kb_id)
    return "ready"


def rebuild_kb_index(kb_id: str) -> str | None:
    """Rebuild a knowledge base's retrieval index from its ready documents' chunks."""
    with session_scope() as db:
        kb = db.get(KnowledgeBase, kb_id)
        if kb is None:
            return None
        rows = [
            (c.text, c.meta or {}, c.embedding)
            for c in db.scalars(
                select(DocumentChunk).join(Document, Document.id == DocumentChunk.document_id)
                .where(Document.knowledge_base_id == kb_id, Document.status == JobStatus.ready.value)
                .order_by(Document.created_at, DocumentChunk.ordinal)
            )
        ]
        kb_dir = get_settings().media_dir / kb.tenant_id / "knowledge" / kb.id
    kb_dir.mkdir(parents=True, exist_ok=True)
    built = build_index(kb_dir, rows)
    if built is None:
        return None
    _set(KnowledgeBase, kb_id, index_dir=str(built[0]), index_chunks=built[1], index_updated_at=utcnow())
    return str(built[0])


# --- session post-processing --------------------------------------------------------------
def postprocess_session_job(session_id: str) -> str:
    """Summarise a finished call and re-check its stored turns for PII (redaction audit)."""
    with session_scope() as db:
        s = db.get(CallSession, session_id)
        if s is None:
            return "missing"
        turns = list(db.scalars(select(Turn).where(Turn.session_id == session_id).order_by(Turn.seq)))
        findings = 0
        for t in turns:
            n = len(find_pii(t.text))
            if n:  # something slipped through redaction at ingest (e.g. a newer rule): fix it now
                findings += n
                t.text = redact(t.text)
        users = [t for t in turns if t.speaker == "user"]
        first = users[0].text[:160] if users else ""
        parts = [f"{len(turns)} turns ({len(users)} from the caller)"]
        if first:
            parts.append(f"opened with: \"{first}\"")
        parts.append(f"outcome: {s.outcome or 'unknown'}")
        if s.escalated:
            parts.append(f"escalated ({s.escalation_reason or 'no reason given'})")
        s.summary = "; ".join(parts) + "."
        s.redaction_findings = findings
        s.post_status = "done"
    return "done"


# --- Celery wrappers ----------------------------------------------------------------------
_task_opts: dict[str, Any] = dict(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, retry_jitter=True, max_retries=8,
)


@celery_app.task(name="admin.prepare_avatar", **_task_opts)
def prepare_avatar_task(avatar_id: str) -> str:
    """Celery task: :func:`prepare_avatar_job`."""
    return prepare_avatar_job(avatar_id)


@celery_app.task(name="admin.ingest_document", **_task_opts)
def ingest_document_task(document_id: str, language: str = "en") -> str:
    """Celery task: :func:`ingest_document_job`."""
    return ingest_document_job(document_id, language)


@celery_app.task(name="admin.rebuild_kb_index", **_task_opts)
def rebuild_kb_index_task(kb_id: str) -> str | None:
    """Celery task: :func:`rebuild_kb_index` (after a document is deleted)."""
    return rebuild_kb_index(kb_id)


@celery_app.task(name="admin.postprocess_session", **_task_opts)
def postprocess_session_task(session_id: str) -> str:
    """Celery task: :func:`postprocess_session_job`."""
    return postprocess_session_job(session_id)


def enqueue(task: Any, *args: Any, queue: str = "default") -> bool:
    """Send a task; False (and a log line) when the broker cannot be reached, so the API still answers."""
    try:
        task.apply_async(args=args, queue=queue, retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
        return True
    except Exception:
        logger.exception("could not enqueue %s%s", task.name, args)
        return False
