"""Calibrate the understanding thresholds on the development split only.

    python -m dialogue.eval.calibrate [--model e5|minilm] [--write]

For each intent kind: the smallest example similarity and margin over ordinary questions
that keep false alarms rare (a false alarm costs twice a miss). For answers, per language:
the knowledge similarity above which answering does more good than harm (a wrong answer
costs twice a missed one). ``--write`` stores them in dialogue/data/understanding.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_KIND_OF = {"refuse": ("forbidden",), "escalate": ("handoff", "escalation"), "end": ("end_call",),
            "ticket": ("ticket",), "injection": ("injection",)}
FALSE_ALARM_COST = 2.0
WRONG_ANSWER_COST = 2.0


def calibrate(model: str = "e5") -> dict:
    from ..understanding import INTENT_KINDS, THRESHOLDS_FILE, Understanding, shared_encoder
    from . import _setups, load_items

    items = load_items("dev")
    setups = _setups({i.persona for i in items})
    encoder = shared_encoder(model)
    und = {name: Understanding(p, idx, encoder) for name, (p, idx) in setups.items()}

    # ---- intents
    rows = []  # (expected kinds, {kind: best score}, none score)
    for it in items:
        u = und[it.persona]
        best = u.intents.scores(u.embed(it.utterance))
        rows.append((_KIND_OF.get(it.expect, ()), {k: v[0] for k, v in best.items()}, best.get("none", (0.0, 0))[0]))
    intents = {}
    for kind in INTENT_KINDS:
        best_cfg, best_gain = (1.1, 1.0), 0.0
        for t in np.arange(0.70, 0.96, 0.005):
            for m in np.arange(-0.03, 0.10, 0.005):
                tp = fp = 0
                for expected, scores, none in rows:
                    s = scores.get(kind)
                    if s is None or s < t or s - none < m:
                        continue
                    if kind in expected:
                        tp += 1
                    else:
                        fp += 1
                gain = tp - FALSE_ALARM_COST * fp
                if gain > best_gain:
                    best_gain, best_cfg = gain, (round(float(t), 3), round(float(m), 3))
        intents[kind] = {"min": best_cfg[0], "margin": best_cfg[1]}
        print(f"intent {kind:11} min {best_cfg[0]:.3f} margin {best_cfg[1]:+.3f}  (dev gain {best_gain:.0f})")

    # ---- answers
    answer = {}
    for lang in sorted({i.lang for i in items}):
        cands = []
        for it in items:
            if it.lang != lang or it.expect not in ("answer", "no_answer"):
                continue
            u = und[it.persona]
            found, _ = u.passages(it.utterance, lang, previous=it.context[-1] if it.context else "")
            if not found:
                continue
            ok = it.expect == "answer" and any(a.lower() in found[0].text.lower() for a in it.accept)
            cands.append((found[0].score, ok))
        best_t, best_gain = 1.1, 0.0
        for t in np.arange(0.70, 1.60, 0.0025):
            gain = sum((1 if ok else -WRONG_ANSWER_COST) for s, ok in cands if s >= t)
            if gain > best_gain:
                best_gain, best_t = gain, round(float(t), 4)
        answer[lang] = best_t
        print(f"answer {lang}: min {best_t:.4f} (dev gain {best_gain:.0f} over {len(cands)} questions)")
    return {"model": encoder.name, "intents": intents, "answer": answer, "file": THRESHOLDS_FILE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dialogue.eval.calibrate")
    parser.add_argument("--model", choices=("e5", "minilm"), default="e5")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    result = calibrate(args.model)
    if args.write:
        path = result["file"]
        data = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None) or {}
        data[result["model"]] = {"intents": result["intents"], "answer": result["answer"]}
        header = ("# Thresholds of dialogue/understanding.py per encoder, calibrated on the dev split of the\n"
                  "# evaluation set by `python -m dialogue.eval.calibrate --write` (never on the test split).\n")
        path.write_text(header + yaml.safe_dump(data, sort_keys=True, allow_unicode=True), encoding="utf-8")
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
