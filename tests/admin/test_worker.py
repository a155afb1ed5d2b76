"""Celery tasks through real brokers: the embedded SQLAlchemy transport (laptop) and Redis (deployment).

A worker subprocess (``python -m admin worker``) consumes tasks sent by name; the
test watches the progress the task writes where the API reads it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from .conftest import REDIS_URL, make_tenant, requires_redis

ROOT = Path(__file__).resolve().parents[2]


def _document(tmp_path: Path) -> str:
    from admin.core.db import session_scope
    from admin.models import Document, KnowledgeBase

    t = make_tenant()
    data = b"First paragraph.\n\nSecond paragraph."
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    with session_scope() as db:
        kb = KnowledgeBase(tenant_id=t.id, name="kb")
        db.add(kb)
        db.flush()
        doc = Document(tenant_id=t.id, knowledge_base_id=kb.id, filename="doc.txt", content_type="text/plain",
                       size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), path=str(path))
        db.add(doc)
        db.flush()
        return doc.id


def _status(doc_id: str) -> tuple[str, int]:
    from sqlalchemy import func, select

    from admin.core.db import session_scope
    from admin.models import Document, DocumentChunk

    with session_scope() as db:
        n = db.scalar(select(func.count()).select_from(DocumentChunk).where(DocumentChunk.document_id == doc_id))
        return db.get(Document, doc_id).status, n


def _run_through_worker(broker: str, tmp_path: Path) -> None:
    from admin.core.config import get_settings

    doc_id = _document(tmp_path)
    env = {**os.environ, "ADMIN_BROKER_URL": broker, "ADMIN_CELERY_EAGER": "false",
           "ADMIN_DATABASE_URL": get_settings().sqlalchemy_url, "ADMIN_DATA_DIR": str(tmp_path),
           "ADMIN_KNOWLEDGE_INGESTOR": "no_such_module:x"}
    worker = subprocess.Popen([sys.executable, "-m", "admin", "worker", "--queues", "default,gpu"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    producer = Celery("producer", broker=broker)
    try:
        producer.send_task("admin.ingest_document", args=[doc_id], queue="default")
        producer.send_task("admin.ingest_document", args=[doc_id], queue="default")  # redelivery: no effect
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _status(doc_id)[0] != "ready":
            time.sleep(0.2)
        time.sleep(1.0)  # let the second message run too
        assert _status(doc_id) == ("ready", 1)  # both paragraphs fit one chunk; no duplicate chunks
    finally:
        producer.close()
        worker.terminate()
        worker.wait(20)


def test_embedded_broker_needs_no_server(tmp_path):
    _run_through_worker(f"sqla+sqlite:///{tmp_path / 'broker.db'}", tmp_path)


@requires_redis
def test_redis_broker(tmp_path):
    _run_through_worker(REDIS_URL, tmp_path)


def test_tasks_ack_late_and_retry():
    from admin.worker import celery_app, ingest_document_task, postprocess_session_task, prepare_avatar_task

    assert celery_app.conf.task_acks_late and celery_app.conf.task_reject_on_worker_lost
    for task in (prepare_avatar_task, ingest_document_task, postprocess_session_task):
        assert task.acks_late and task.autoretry_for and task.max_retries >= 3


def test_default_broker_is_embedded(monkeypatch, tmp_path):
    from admin.core.config import Settings

    monkeypatch.delenv("ADMIN_BROKER_URL", raising=False)
    assert Settings(data_dir=tmp_path).celery_broker_url.startswith("sqla+sqlite:///")
    assert Settings(data_dir=tmp_path, database_url="").sqlalchemy_url.startswith("sqlite:///")
