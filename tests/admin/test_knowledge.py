"""Knowledge bases and documents: upload checks, ingestion bookkeeping (status, progress, idempotency)."""

from __future__ import annotations

API = "/api/v1"
TEXT = ("# Opening hours\n\nWe are open from nine to five on weekdays.\n\n"
        "# Cards\n\nA lost card can be blocked in the app or by phone, day and night.\n")


def _kb(client, tenant):
    return client.post(f"{API}/knowledge-bases", json={"name": "FAQ", "language": "en"},
                       headers=tenant.headers["operator"]).json()


def _upload(client, tenant, kb_id, name="faq.md", data=TEXT.encode()):
    return client.post(f"{API}/knowledge-bases/{kb_id}/documents", files={"file": (name, data, "text/plain")},
                       headers=tenant.headers["operator"])


def test_upload_is_ingested_with_the_fallback_chunker(client, tenant, monkeypatch):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "knowledge_ingestor", "no_such_module:ingest")
    kb = _kb(client, tenant)
    r = _upload(client, tenant, kb["id"])
    assert r.status_code == 202, r.text
    doc = client.get(f"{API}/documents/{r.json()['id']}", headers=tenant.headers["viewer"]).json()
    assert doc["status"] == "ready" and doc["progress"] == 1.0 and doc["chunk_count"] == 1
    chunks = client.get(f"{API}/documents/{doc['id']}/chunks", headers=tenant.headers["agent"]).json()
    assert "nine to five" in chunks[0]["text"] and chunks[0]["embedded"] is False


def test_pluggable_ingestor_gets_the_text_and_embeddings_are_stored(client, tenant, monkeypatch):
    import sys
    import types

    from admin.core.config import get_settings

    mod = types.ModuleType("fake_dialogue_knowledge")
    calls = []

    def ingest_text(path, *, document_id, filename, content_type, language):
        calls.append((document_id, filename, content_type, language))
        text = path.read_text()
        return [{"text": p, "embedding": [0.1, 0.2], "meta": {"heading": p[:10]}} for p in text.split("\n\n") if p]

    mod.ingest_text = ingest_text
    monkeypatch.setitem(sys.modules, "fake_dialogue_knowledge", mod)
    monkeypatch.setattr(get_settings(), "knowledge_ingestor", "fake_dialogue_knowledge:ingest_text")
    kb = _kb(client, tenant)
    doc = _upload(client, tenant, kb["id"]).json()
    assert calls == [(doc["id"], "faq.md", "text/markdown", "en")]
    chunks = client.get(f"{API}/documents/{doc['id']}/chunks", headers=tenant.headers["viewer"]).json()
    assert len(chunks) == 4 and all(c["embedded"] for c in chunks)

    # idempotent: a redelivered task does nothing; an explicit re-ingest replaces, never duplicates
    from admin.worker import ingest_document_job

    assert ingest_document_job(doc["id"]) == "ready" and len(calls) == 1
    client.post(f"{API}/documents/{doc['id']}/ingest", headers=tenant.headers["operator"])
    assert len(calls) == 2
    assert len(client.get(f"{API}/documents/{doc['id']}/chunks", headers=tenant.headers["viewer"]).json()) == 4


def test_failing_ingestor_marks_the_document_failed(client, tenant, monkeypatch):
    import sys
    import types

    from admin.core.config import get_settings

    mod = types.ModuleType("broken_ingestor")

    def ingest_text(path, **kw):
        raise ValueError("unsupported layout")

    mod.ingest_text = ingest_text
    monkeypatch.setitem(sys.modules, "broken_ingestor", mod)
    monkeypatch.setattr(get_settings(), "knowledge_ingestor", "broken_ingestor:ingest_text")
    doc = _upload(client, tenant, _kb(client, tenant)["id"]).json()
    got = client.get(f"{API}/documents/{doc['id']}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "failed" and "unsupported layout" in got["status_detail"]


def test_upload_checks(client, tenant):
    kb = _kb(client, tenant)
    r = _upload(client, tenant, kb["id"], name="malware.exe", data=b"MZ")
    assert r.status_code == 415 and "not one" in r.json()["detail"]
    r = _upload(client, tenant, kb["id"], name="x.txt", data=b"\x00\x01binary")
    assert r.status_code == 415
    r = _upload(client, tenant, kb["id"], name="fake.pdf", data=b"<html>not a pdf</html>")
    assert r.status_code == 415 and "not a PDF" in r.json()["detail"]


def test_crud(client, tenant):
    kb = _kb(client, tenant)
    h = tenant.headers["operator"]
    assert client.patch(f"{API}/knowledge-bases/{kb['id']}", json={"name": "Cards"}, headers=h).json()["name"] == "Cards"
    doc = _upload(client, tenant, kb["id"]).json()
    assert [d["id"] for d in client.get(f"{API}/knowledge-bases/{kb['id']}/documents", headers=h).json()] == [doc["id"]]
    assert client.delete(f"{API}/knowledge-bases/{kb['id']}", headers=h).status_code == 204
    assert client.get(f"{API}/documents/{doc['id']}", headers=h).status_code == 404


def test_real_dialogue_ingestion_builds_the_agents_index(client, tenant, monkeypatch):
    """Chunks and MiniLM embeddings from dialogue.knowledge, and an index the agent can load and search."""
    import pytest

    try:
        from dialogue.knowledge import Embedder, KnowledgeIndex
        Embedder.shared()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"dialogue knowledge or its embedding model is not available here: {exc}")
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "knowledge_ingestor", "admin.ingest:dialogue_ingestor")
    kb = _kb(client, tenant)
    doc = _upload(client, tenant, kb["id"]).json()
    got = client.get(f"{API}/documents/{doc['id']}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "ready", got
    chunks = client.get(f"{API}/documents/{doc['id']}/chunks", headers=tenant.headers["viewer"]).json()
    assert chunks and all(c["embedded"] for c in chunks)
    kb_now = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=tenant.headers["agent"]).json()
    assert kb_now["index_chunks"] == len(chunks) and kb_now["index_dir"]
    hits = KnowledgeIndex.load(kb_now["index_dir"]).search("when are you open?", k=1)
    assert "nine to five" in hits[0].chunk.text
    # deleting the document rebuilds the index without it
    client.delete(f"{API}/documents/{doc['id']}", headers=tenant.headers["operator"])
    kb_after = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=tenant.headers["viewer"]).json()
    assert kb_after["index_chunks"] == 0
