"""Knowledge bases and their documents (upload, status, re-ingestion)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import crud
from admin.api.deps import READERS, Editors, Principal, SessionDep, require
from admin.api.uploads import display_name, multipart_file_body, read_upload
from admin.core import audit
from admin.core.config import get_settings
from admin.models import Document, DocumentChunk, JobStatus, KnowledgeBase, Role
from admin.schemas import DocumentOut, KnowledgeBaseIn, KnowledgeBaseOut, KnowledgeBaseUpdate
from admin.worker import enqueue, ingest_document_task, rebuild_kb_index_task

router = APIRouter(tags=["knowledge"])
KbReaders = Annotated[Principal, Depends(require(*READERS, Role.agent))]

ALLOWED_TYPES = {
    ".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf",
    ".yaml": "application/x-faq+yaml", ".yml": "application/x-faq+yaml",  # question/answer lists
}


@router.get("/knowledge-bases", response_model=list[KnowledgeBaseOut])
def list_kbs(db: SessionDep, principal: KbReaders) -> list[KnowledgeBase]:
    """Knowledge bases of the organisation."""
    return crud.list_owned(db, KnowledgeBase, principal.tenant_id, limit=500)


@router.post("/knowledge-bases", response_model=KnowledgeBaseOut, status_code=201)
def create_kb(body: KnowledgeBaseIn, db: SessionDep, principal: Editors) -> KnowledgeBase:
    """Create a knowledge base."""
    obj = KnowledgeBase(tenant_id=principal.tenant_id, **body.model_dump())
    return crud.create(db, principal.actor, obj, resource="knowledge_base", tenant_id=principal.tenant_id)


@router.get("/knowledge-bases/{kb_id}", response_model=KnowledgeBaseOut)
def read_kb(kb_id: str, db: SessionDep, principal: KbReaders) -> KnowledgeBase:
    """One knowledge base."""
    return crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")


@router.patch("/knowledge-bases/{kb_id}", response_model=KnowledgeBaseOut)
def update_kb(kb_id: str, body: KnowledgeBaseUpdate, db: SessionDep, principal: Editors) -> KnowledgeBase:
    """Change a knowledge base."""
    obj = crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    return crud.update(db, principal.actor, obj, body.model_dump(exclude_unset=True), resource="knowledge_base")


@router.delete("/knowledge-bases/{kb_id}", status_code=204)
def delete_kb(kb_id: str, db: SessionDep, principal: Editors) -> None:
    """Delete a knowledge base and its documents."""
    obj = crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    files = [d.path for d in db.scalars(select(Document).where(Document.knowledge_base_id == kb_id))]
    files += [obj.index_dir, get_settings().media_dir / obj.tenant_id / "knowledge" / obj.id]
    crud.delete(db, principal.actor, obj, resource="knowledge_base")
    crud.remove_media(*files)


@router.get("/knowledge-bases/{kb_id}/documents", response_model=list[DocumentOut])
def list_documents(kb_id: str, db: SessionDep, principal: KbReaders) -> list[Document]:
    """Documents of a knowledge base, with their ingestion status."""
    crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    return list(db.scalars(select(Document).where(Document.knowledge_base_id == kb_id).order_by(Document.created_at)))


@router.post("/knowledge-bases/{kb_id}/documents", response_model=DocumentOut, status_code=202,
             openapi_extra=multipart_file_body("A .txt, .md, .html, .pdf or .yaml document"))
async def upload_document(kb_id: str, request: Request, db: SessionDep, principal: Editors) -> Document:
    """Upload a text, Markdown, HTML, PDF or YAML FAQ document (multipart field ``file``); ingestion
    (chunk + embed) runs as a task.

    The caller and the knowledge base are checked before the body is read; storing the file and
    (in embedded mode) ingesting it run in a worker thread, never on the event loop.
    """
    s = get_settings()
    kb = await run_in_threadpool(crud.get_owned, db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    raw_name, data = await read_upload(
        request, s.max_document_bytes, f"The document is larger than {s.max_document_bytes // (1024 * 1024)} MB; split it.")
    return await run_in_threadpool(_store_document, db, principal, kb, raw_name, data)


def _store_document(db: Session, principal: Principal, kb: KnowledgeBase, raw_name: str | None, data: bytes) -> Document:
    s = get_settings()
    name = display_name(raw_name, "document.txt")
    suffix = PurePath(name).suffix.lower()
    ctype = ALLOWED_TYPES.get(suffix)
    if ctype is None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"Upload a {', '.join(sorted(ALLOWED_TYPES))} file; '{name}' is not one.")
    if ctype == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"'{name}' is not a PDF file.")
    elif b"\x00" in data[:4096]:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "The file looks binary; upload text.")
    sha = hashlib.sha256(data).hexdigest()
    folder = s.media_dir / kb.tenant_id / "knowledge" / kb.id
    folder.mkdir(parents=True, exist_ok=True)
    # The caller's file name is only shown, never part of a path: any length, any script, no traversal.
    path = folder / f"{sha[:16]}-{uuid.uuid4().hex[:8]}{suffix}"
    path.write_bytes(data)
    doc = Document(tenant_id=kb.tenant_id, knowledge_base_id=kb.id, filename=name, content_type=ctype,
                   size_bytes=len(data), sha256=sha, path=str(path))
    doc = crud.create(db, principal.actor, doc, resource="document", tenant_id=kb.tenant_id)
    enqueue(ingest_document_task, doc.id, kb.language)
    db.refresh(doc)
    return doc


@router.get("/documents/{doc_id}", response_model=DocumentOut)
def read_document(doc_id: str, db: SessionDep, principal: KbReaders) -> Document:
    """One document and its ingestion progress."""
    return crud.get_owned(db, Document, doc_id, principal.tenant_id, what="document")


@router.get("/documents/{doc_id}/chunks")
def read_chunks(doc_id: str, db: SessionDep, principal: KbReaders) -> list[dict]:
    """The passages a document was split into (without embeddings)."""
    crud.get_owned(db, Document, doc_id, principal.tenant_id, what="document")
    rows = db.scalars(select(DocumentChunk).where(DocumentChunk.document_id == doc_id).order_by(DocumentChunk.ordinal))
    return [{"ordinal": c.ordinal, "text": c.text, "meta": c.meta, "embedded": c.embedding is not None} for c in rows]


@router.post("/documents/{doc_id}/ingest", response_model=DocumentOut, status_code=202)
def reingest(doc_id: str, db: SessionDep, principal: Editors) -> Document:
    """Ingest a document again (e.g. after the embedding model changed)."""
    doc = crud.get_owned(db, Document, doc_id, principal.tenant_id, what="document")
    kb = db.get(KnowledgeBase, doc.knowledge_base_id)
    doc.status, doc.progress, doc.ingested_sha256 = JobStatus.pending.value, 0.0, None
    audit.record(db, tenant_id=doc.tenant_id, actor=principal.actor, action="ingest", resource="document",
                 resource_id=doc.id)
    db.commit()
    enqueue(ingest_document_task, doc.id, kb.language if kb else "en")
    db.refresh(doc)
    return doc


@router.delete("/documents/{doc_id}", status_code=204)
def delete_document(doc_id: str, db: SessionDep, principal: Editors) -> None:
    """Delete a document and its passages; the knowledge base's index is rebuilt without them."""
    doc = crud.get_owned(db, Document, doc_id, principal.tenant_id, what="document")
    kb_id, path = doc.knowledge_base_id, doc.path
    crud.delete(db, principal.actor, doc, resource="document")
    if not db.scalar(select(Document.id).where(Document.path == path).limit(1)):  # the same upload twice shares it
        crud.remove_media(path)
    enqueue(rebuild_kb_index_task, kb_id)
