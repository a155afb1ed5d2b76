"""Knowledge ingestion: the bridge from uploaded documents to the agent's retrieval index.

The default ingestor uses the dialogue package (parsing, chunking, MiniLM
embeddings); it is imported lazily so the admin runs without it, falling back
to a plain paragraph chunker without embeddings. After a document is ingested
the knowledge base's index folder is rebuilt from the stored chunks in the
format ``dialogue.knowledge.KnowledgeIndex.load`` reads.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

logger = logging.getLogger("admin.ingest")


class IngestLimitError(ValueError):
    """A document that exceeds a bound of ingestion (time, memory, passages); the sentence says which."""


def simple_chunks(text: str, *, max_chars: int = 800, max_chunks: int | None = None) -> list[dict[str, Any]]:
    """Fallback chunker (no embeddings): paragraphs packed up to ``max_chars``; linear time.

    Raises :class:`IngestLimitError` once the text makes more than ``max_chunks`` passages.
    """
    chunks: list[str] = []
    current = ""

    def emit(piece: str) -> None:
        chunks.append(piece)
        if max_chunks is not None and len(chunks) > max_chunks:
            raise IngestLimitError(f"The document makes more than {max_chunks} passages; split it into smaller documents.")

    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        start = 0  # cut long paragraphs by index, never by re-slicing the rest (quadratic on one long line)
        while len(para) - start > max_chars:
            limit = start + max_chars
            cut = para.rfind(" ", start, limit)
            cut = cut if cut > start + max_chars // 2 else limit
            if current:
                emit(current)
                current = ""
            emit(para[start:cut].strip())
            start = cut + 1 if cut < len(para) and para[cut] == " " else cut
        para = para[start:]
        if current and len(current) + len(para) + 1 > max_chars:
            emit(current)
            current = para
        else:
            current = f"{current} {para}".strip()
    if current:
        emit(current)
    return [{"text": c} for c in chunks if c]


_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*>?")
_CLOSE = {t: re.compile(f"</{t}", re.I) for t in ("script", "style")}


def _strip_tags(raw: str) -> str:
    """Text of HTML, block ends as paragraph breaks, scripts and styles dropped; linear time (each tag
    match stops at the next '<' or '>'; an unclosed comment or script runs to the end)."""
    out: list[str] = []
    pos, n = 0, len(raw)
    while pos < n:
        lt = raw.find("<", pos)
        if lt == -1:
            out.append(raw[pos:])
            break
        out.append(raw[pos:lt])
        if raw.startswith("<!--", lt):
            end = raw.find("-->", lt + 4)
            pos = n if end == -1 else end + 3
            continue
        m = _TAG.match(raw, lt)
        if m is None:
            out.append("<")
            pos = lt + 1
            continue
        pos = m.end()
        tag = m.group(2).lower()
        if not m.group(1) and tag in ("script", "style"):
            close = _CLOSE[tag].search(raw, pos)
            pos = n if close is None else close.start()
        out.append("\n\n" if tag in ("p", "li", "br", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6") else " ")
    return html.unescape("".join(out))


def extract_text(path: Path, content_type: str) -> str:
    """Plain text of a text, Markdown, CSV, JSON or HTML document (for the fallback chunker); linear time."""
    if content_type == "application/pdf":
        raise ValueError("PDF needs the dialogue package (pypdf) installed")
    raw = path.read_bytes().decode("utf-8", errors="replace")
    return _strip_tags(raw) if "html" in content_type else raw


# --- bounded ingestion ----------------------------------------------------------------------
# Parsing and chunking an uploaded document is the part an attacker controls, so it runs in a
# child process with a wall-clock limit and an address-space limit: a hostile file costs at most
# those, and the API's event loop (and the worker's other tasks) never wait on it.

def _limits() -> tuple[float, int, int]:
    from admin.core.config import get_settings

    s = get_settings()
    return float(s.ingest_time_limit_seconds), int(s.ingest_memory_mb), int(s.max_document_chunks)


def run_isolated(kind: str, path: Path, content_type: str, filename: str, *, time_limit: float | None = None,
                 memory_mb: int | None = None, max_chunks: int | None = None) -> list[dict[str, Any]]:
    """Chunks of one document, computed by ``python -m admin.ingest`` in a child process.

    ``kind`` is ``plain`` (:func:`simple_chunks`) or ``dialogue`` (:func:`dialogue.knowledge.ingest_document`).
    Raises :class:`IngestLimitError` when the child runs past ``time_limit`` seconds (it is killed),
    past ``memory_mb`` of address space, or makes more than ``max_chunks`` passages; ValueError with
    the reader's sentence when the document cannot be read.
    """
    d_time, d_mem, d_chunks = _limits()
    time_limit = d_time if time_limit is None else time_limit
    memory_mb = d_mem if memory_mb is None else memory_mb
    max_chunks = d_chunks if max_chunks is None else max_chunks
    request = {"kind": kind, "path": str(path), "content_type": content_type, "filename": filename,
               "memory_mb": memory_mb, "max_chunks": max_chunks}
    root = str(Path(__file__).resolve().parent.parent)  # the checkout this admin package comes from
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "admin.ingest"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=root, start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise IngestLimitError(
            f"Reading the document took longer than {time_limit:g} s; split it into smaller documents."
        ) from None
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    try:
        answer = json.loads(out.decode("utf-8")) if out else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if proc.returncode and proc.returncode < 0:
            raise IngestLimitError(f"Reading the document was stopped (signal {-proc.returncode}); "
                                   "split it into smaller documents.")
        logger.error("ingestion child failed (exit %s): %s", proc.returncode, err.decode("utf-8", "replace")[-2000:])
        raise IngestLimitError(f"Reading the document needed more than {memory_mb} MB of memory or failed; "
                               "split it into smaller documents.")
    if answer.get("ok"):
        return answer["chunks"]
    if answer.get("limit"):
        raise IngestLimitError(answer["error"])
    raise ValueError(answer["error"])


def _child_main() -> None:
    """Entry point of the child process: one JSON request on stdin, one JSON answer on stdout."""
    import resource

    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    limit = int(request["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    max_chunks = int(request["max_chunks"])
    try:
        path, ctype, filename = Path(request["path"]), request["content_type"], request["filename"]
        if request["kind"] == "dialogue":
            from dialogue.knowledge import TooManyChunks, TooMuchText, ingest_document

            try:
                chunks = [{"text": c.text, "meta": {**asdict(c), "kind": "dialogue"}}
                          for c in ingest_document(path, ctype, name=filename, max_chunks=max_chunks)]
            except (TooManyChunks, TooMuchText) as exc:
                raise IngestLimitError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
        else:
            chunks = simple_chunks(extract_text(path, ctype), max_chunks=max_chunks)
        answer: dict[str, Any] = {"ok": True, "chunks": chunks}
    except MemoryError:
        answer = {"ok": False, "limit": True, "error": f"Reading the document needed more than "
                  f"{request['memory_mb']} MB of memory; split it into smaller documents."}
    except IngestLimitError as exc:
        answer = {"ok": False, "limit": True, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001  (the reader's sentence goes back to the document's status)
        answer = {"ok": False, "error": str(exc) or exc.__class__.__name__}
    sys.stdout.buffer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8"))
    sys.stdout.flush()


def plain_ingestor(path: Path, *, document_id: str, filename: str, content_type: str, language: str) -> list[dict]:
    """Paragraph chunks without embeddings (parsed in a bounded child process)."""
    return run_isolated("plain", path, content_type, filename)


def dialogue_ingestor(path: Path, *, document_id: str, filename: str, content_type: str, language: str) -> list[dict]:
    """Chunks from :mod:`dialogue.knowledge` (parsed in a bounded child process) with MiniLM embeddings;
    plain chunks when it is missing."""
    try:
        from dialogue.knowledge import Embedder
    except ImportError:
        logger.warning("dialogue.knowledge not importable; using the plain paragraph chunker")
        return plain_ingestor(path, document_id=document_id, filename=filename, content_type=content_type,
                              language=language)
    chunks = run_isolated("dialogue", path, content_type, filename)
    vectors = None
    try:
        emb = Embedder.shared()
        texts = [c["text"] for c in chunks]
        titles = [c["meta"].get("title") or "" for c in chunks]
        vectors = emb.encode([f"{t}\n{x}" if t and t not in x else x for t, x in zip(titles, texts)])
    except Exception as exc:  # noqa: BLE001  (no model on this machine: keep the chunks, embed later)
        logger.warning("no embeddings for %s: %s", filename, exc)
    for i, c in enumerate(chunks):
        c["embedding"] = vectors[i].tolist() if vectors is not None else None
    return chunks


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


if __name__ == "__main__":
    _child_main()
