"""Knowledge ingestion: the bridge from uploaded documents to the agent's retrieval index.

The default ingestor uses the dialogue package (parsing, chunking, MiniLM
embeddings); it is imported lazily so the admin runs without it, falling back
to a plain paragraph chunker without embeddings. After a document is ingested
the knowledge base's index folder is rebuilt from the stored chunks in the
format ``dialogue.knowledge.KnowledgeIndex.load`` reads.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

logger = logging.getLogger("admin.ingest")


def simple_chunks(text: str, *, max_chars: int = 800) -> list[dict[str, Any]]:
    """Fallback chunker (no embeddings): paragraphs packed up to ``max_chars``."""
    chunks: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        while len(para) > max_chars:
            cut = para.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            if current:
                chunks.append(current)
                current = ""
            chunks.append(para[:cut].strip())
            para = para[cut:].strip()
        if current and len(current) + len(para) + 1 > max_chars:
            chunks.append(current)
            current = para
        else:
            current = f"{current} {para}".strip()
    if current:
        chunks.append(current)
    return [{"text": c} for c in chunks]


def extract_text(path: Path, content_type: str) -> str:
    """Plain text of a text, Markdown, CSV, JSON or HTML document (for the fallback chunker)."""
    if content_type == "application/pdf":
        raise ValueError("PDF needs the dialogue package (pypdf) installed")
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if "html" in content_type:
        raw = re.sub(r"(?is)<(script|style).*?</\1>", " ", raw)
        raw = re.sub(r"(?s)<br\s*/?>|</p>|</h\d>|</li>", "\n\n", raw)
        raw = re.sub(r"(?s)<[^>]+>", " ", raw)
    return raw


def plain_ingestor(path: Path, *, document_id: str, filename: str, content_type: str, language: str) -> list[dict]:
    """Paragraph chunks without embeddings."""
    return simple_chunks(extract_text(path, content_type))


def dialogue_ingestor(path: Path, *, document_id: str, filename: str, content_type: str, language: str) -> list[dict]:
    """Chunks and MiniLM embeddings from :mod:`dialogue.knowledge`; plain chunks when it is missing."""
    try:
        from dialogue.knowledge import Embedder, ingest_document
    except ImportError:
        logger.warning("dialogue.knowledge not importable; using the plain paragraph chunker")
        return plain_ingestor(path, document_id=document_id, filename=filename, content_type=content_type,
                              language=language)
    chunks = ingest_document(path, content_type, name=filename)
    vectors = None
    try:
        emb = Embedder.shared()
        vectors = emb.encode([f"{c.title}\n{c.text}" if c.title and c.title not in c.text else c.text for c in chunks])
    except Exception as exc:  # noqa: BLE001  (no model on this machine: keep the chunks, embed later)
        logger.warning("no embeddings for %s: %s", filename, exc)
    return [
        {"text": c.text, "meta": {**asdict(c), "kind": "dialogue"},
         "embedding": vectors[i].tolist() if vectors is not None else None}
        for i, c in enumerate(chunks)
    ]


def build_index(kb_dir: Path, rows: list[tuple[str, dict[str, Any], list[float] | None]]) -> tuple[Path, int] | None:
    """Write the knowledge base's index from stored chunks ``(text, meta, embedding)``; None without dialogue.

    Written to a scratch folder and swapped in, so the agent never loads half an index.
    """
    try:
        import numpy as np

        from dialogue.knowledge import Chunk, KnowledgeIndex
    except ImportError:
        return None
    if any(e is None for _, _, e in rows):
        logger.warning("some chunks of %s have no embedding; index not rebuilt", kb_dir)
        return None
    chunks = []
    for i, (text, meta, _) in enumerate(rows):
        fields = {k: meta[k] for k in ("id", "source", "text", "title", "lang", "answer") if k in meta}
        fields.setdefault("id", f"c{i}")
        fields.setdefault("source", meta.get("source", "document"))
        fields["text"] = text
        chunks.append(Chunk(**fields))
    dim = len(rows[0][2]) if rows else 384
    vectors = np.asarray([e for _, _, e in rows], dtype=np.float32).reshape(len(rows), dim)
    final = kb_dir / "index"
    tmp = kb_dir / f".index-{uuid.uuid4().hex}"
    KnowledgeIndex(chunks, vectors).save(tmp)
    old = kb_dir / f".old-{uuid.uuid4().hex}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final, len(chunks)
