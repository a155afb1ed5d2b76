"""Caller-side evaluation of the offline policy: ``python -m dialogue.eval [--split dev|test]``.

The set (``dev.yaml``, ``test.yaml`` beside this file) holds utterances written from the
caller's side for the three demo personas, in English and Chinese: paraphrases, fillers,
lowercase ASR-style text, multi-intent sentences, follow-ups, forbidden topics,
escalations, handoff, goodbye, ticket and injection attempts, and questions the
knowledge does not answer. Thresholds are calibrated on ``dev`` only.

Each item runs in a fresh call (its ``c`` turns first) through :class:`GroundedPolicy`
with no LLM; the last turn's decision and reply are scored:

* answer accuracy: expected answers given, with one of the item's strings in the reply;
* wrong-answer rate: replies that answer with the wrong passage, or answer what should
  have been refused, escalated or left unanswered, over all items;
* missed: expected answers not given (no answer, refusal...), over expected answers;
* refusal recall / precision: out-of-scope refusals and injection refusals;
* escalation recall / precision: hand-overs to a person (asked for, or a rule);
* intents: goodbye and ticket requests recognised;
* p95 policy time of the scored turn.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

EVAL_DIR = Path(__file__).resolve().parent
PERSONA_DIR = EVAL_DIR.parent / "data" / "personas"
SPLITS = ("dev", "test")

_OUTCOME = {"answer": "answer", "no_answer": "no_answer", "refuse_scope": "refuse", "refuse_injection": "injection",
            "escalate": "escalate", "end_call": "end", "ticket": "ticket", "pii_warning": "no_answer"}
REFUSALS = ("refuse", "injection")


@dataclass
class Item:
    persona: str
    lang: str
    kind: str
    utterance: str
    expect: str
    accept: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    item: Item
    outcome: str
    reply: str
    ms: float

    @property
    def correct_answer(self) -> bool:
        low = self.reply.lower()
        return self.outcome == "answer" and any(a.lower() in low for a in self.item.accept)

    @property
    def right(self) -> bool:
        if self.item.expect == "answer":
            return self.correct_answer
        return self.outcome == self.item.expect

    @property
    def wrong_answer(self) -> bool:
        return self.outcome == "answer" and not (self.item.expect == "answer" and self.correct_answer)


def load_items(split: str = "dev") -> list[Item]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    data = yaml.safe_load((EVAL_DIR / f"{split}.yaml").read_text(encoding="utf-8"))
    return [Item(persona=d["p"], lang=d["l"], kind=d["k"], utterance=d["u"], expect=d["e"],
                 accept=[str(a) for a in d.get("a", [])], context=list(d.get("c", []))) for d in data["items"]]


def _setups(personas: set[str]) -> dict:
    from .. import DialogueSettings, load_knowledge, load_persona

    out = {}
    for name in sorted(personas):
        path = PERSONA_DIR / f"{name}.yaml"
        persona = load_persona(path)
        out[name] = (persona, load_knowledge(DialogueSettings(persona_file=str(path)), persona))
    return out


async def _run_item(item: Item, persona, index) -> Outcome:
    from ..grounded import GroundedPolicy
    from ..types import Message, TextDelta

    policy = GroundedPolicy(persona, index)
    messages: list[Message] = []

    async def turn(text: str) -> tuple[str, float]:
        messages.append(Message("user", text))
        t0 = time.perf_counter()
        said = "".join([ev.text async for ev in policy.respond(list(messages)) if isinstance(ev, TextDelta)])
        ms = (time.perf_counter() - t0) * 1000
        messages.append(Message("assistant", said))
        return said, ms

    for prior in item.context:
        await turn(prior)
    reply, ms = await turn(item.utterance)
    decision = policy.turns[-1].decision if policy.turns else ""
    return Outcome(item, _OUTCOME.get(decision, decision or "none"), reply, ms)


def run(split: str = "dev", items: list[Item] | None = None) -> list[Outcome]:
    """Every item of ``split`` through the offline policy (a fresh call each)."""
    items = items if items is not None else load_items(split)
    setups = _setups({i.persona for i in items})

    async def main() -> list[Outcome]:
        # One warm-up turn per persona: model loading and caches are not policy time.
        for persona, index in setups.values():
            await _run_item(Item(persona.id, "en", "warmup", "hello", "answer"), persona, index)
        return [await _run_item(i, *setups[i.persona]) for i in items]

    return asyncio.run(main())


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def metrics(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    """The figures of one group of outcomes (None where a figure has no denominator)."""
    exp_answer = [o for o in outcomes if o.item.expect == "answer"]
    exp_ref = [o for o in outcomes if o.item.expect in REFUSALS]
    got_ref = [o for o in outcomes if o.outcome in REFUSALS]
    exp_esc = [o for o in outcomes if o.item.expect == "escalate"]
    got_esc = [o for o in outcomes if o.outcome == "escalate"]
    intents = [o for o in outcomes if o.item.expect in ("end", "ticket")]
    return {
        "n": len(outcomes),
        "answer_acc": _ratio(sum(o.correct_answer for o in exp_answer), len(exp_answer)),
        "wrong": _ratio(sum(o.wrong_answer for o in outcomes), len(outcomes)),
        "missed": _ratio(sum(o.outcome != "answer" for o in exp_answer), len(exp_answer)),
        "refusal_r": _ratio(sum(o.outcome == o.item.expect for o in exp_ref), len(exp_ref)),
        "refusal_p": _ratio(sum(o.outcome == o.item.expect for o in got_ref), len(got_ref)),
        "escal_r": _ratio(sum(o.outcome == "escalate" for o in exp_esc), len(exp_esc)),
        "escal_p": _ratio(sum(o.item.expect == "escalate" for o in got_esc), len(got_esc)),
        "intent_acc": _ratio(sum(o.outcome == o.item.expect for o in intents), len(intents)),
        "unans_ok": _ratio(sum(o.outcome == "no_answer" for o in outcomes if o.item.expect == "no_answer"),
                           sum(o.item.expect == "no_answer" for o in outcomes)),
        "p95_ms": float(np.percentile([o.ms for o in outcomes], 95)) if outcomes else None,
        "right": _ratio(sum(o.right for o in outcomes), len(outcomes)),
    }


COLUMNS = [("n", "n"), ("right", "all ok"), ("answer_acc", "ans acc"), ("wrong", "wrong"), ("missed", "missed"),
           ("refusal_r", "ref R"), ("refusal_p", "ref P"), ("escal_r", "esc R"), ("escal_p", "esc P"),
           ("intent_acc", "end/tkt"), ("unans_ok", "no-ans ok"), ("p95_ms", "p95 ms")]


def table(outcomes: list[Outcome]) -> str:
    """Per-category table: by kind of utterance, by persona and language, and overall."""
    groups: list[tuple[str, list[Outcome]]] = []
    for kind in sorted({o.item.kind for o in outcomes}):
        groups.append((kind, [o for o in outcomes if o.item.kind == kind]))
    groups.append(("", []))
    for key in sorted({(o.item.persona, o.item.lang) for o in outcomes}):
        groups.append((f"{key[0]}/{key[1]}", [o for o in outcomes if (o.item.persona, o.item.lang) == key]))
    groups.append(("", []))
    for lang in sorted({o.item.lang for o in outcomes}):
        groups.append((f"all/{lang}", [o for o in outcomes if o.item.lang == lang]))
    groups.append(("ALL", outcomes))

    def cell(key: str, v) -> str:
        if v is None:
            return "-"
        if key == "n":
            return str(v)
        if key == "p95_ms":
            return f"{v:.1f}"
        return f"{100 * v:.0f}%"

    head = f"{'category':14}" + "".join(f"{label:>10}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, group in groups:
        if not group:
            lines.append("")
            continue
        m = metrics(group)
        lines.append(f"{name:14}" + "".join(f"{cell(k, m[k]):>10}" for k, _ in COLUMNS))
    return "\n".join(lines)


def failures(outcomes: list[Outcome]) -> str:
    rows = []
    for o in outcomes:
        if not o.right:
            ctx = f" (after {o.item.context})" if o.item.context else ""
            rows.append(f"[{o.item.persona}/{o.item.lang}/{o.item.kind}] {o.item.utterance!r}{ctx}: "
                        f"expected {o.item.expect}, got {o.outcome}: {o.reply[:110]!r}")
    return "\n".join(rows)
