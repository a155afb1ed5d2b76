"""Barge-in through the real stack: how soon the avatar's voice stops when the caller talks over it.

    python -m bench.bargein [--trials 5] [--out out/bench]

One call; each trial asks for a long answer, waits until it has played for 1.5 s, then
speaks a new question over it. The figure is the time from the first voiced sample of the
caller's new question (as it left the caller) to the last loud 10 ms of the avatar's
audio before it went quiet, on the caller's clock. A 150 ms "hmm" is also said over an
answer in each trial: it must not stop it (counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import uuid
from pathlib import Path

import numpy as np

from agent.settings import AgentSettings
from agent.token import caller_token
from harness.caller import RATE, ScriptedCaller, synthesize
from harness.devstack import Stack, free_port

LONG = "How do I report a lost card?"
OVER = "What are your opening hours?"


def voiced_start(pcm: np.ndarray, threshold: int = 1500) -> float:
    """Seconds from the start of ``pcm`` to its first loud sample."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    return float(loud[0]) / RATE if loud.size else 0.0


def kept_playing(stack: Stack, room: str, asked: list[tuple[float, float]]) -> int:
    """How many of the long answers were still being spoken when the question over them began,
    by the agent's own record (``started/stopped_speaking_at``): the caller's audio level cannot
    tell a "hmm" that stopped the answer from a gap before its next sentence on a busy machine.
    ``asked``: (the answer's first audio at the caller, the question's start) per trial."""
    spoken = [(r["metrics"]["started_speaking_at"], r["metrics"]["stopped_speaking_at"])
              for r in stack.log_records("agent")
              if r.get("room") == room and r.get("role") == "assistant" and isinstance(r.get("metrics"), dict)
              and "stopped_speaking_at" in r["metrics"]]
    kept = 0
    for first_audio, q_start in asked:
        start, stop = min(spoken, key=lambda r: abs(r[0] - first_audio), default=(0.0, 0.0))
        kept += int(abs(start - first_audio) < 1.5 and stop > q_start)
    return kept


async def trials(stack: Stack, n: int) -> dict:
    s = AgentSettings()
    voice = s.model_path(s.piper_voice)
    long_q, over_q = synthesize(LONG, voice), synthesize(OVER, voice)
    mm = synthesize("Hmm.", voice)
    mm = mm[np.flatnonzero(np.abs(mm) > 2000)[0]:][: int(0.15 * RATE)]
    caller = ScriptedCaller(stack.url, caller_token(f"barge-{uuid.uuid4().hex[:6]}", "caller"))
    await caller.join()
    room = caller.room.name
    out: dict = {"stop_ms": [], "mm_kept": 0, "mm_trials": 0, "missed": 0}
    asked: list[tuple[float, float]] = []
    try:
        assert await caller.wait_video(60), "no avatar video"
        await caller.wait_greeting()
        await caller.wait_quiet(1.5)
        for _ in range(n):
            turn = await caller.ask(LONG, long_q, wait_answer_end=False)
            await asyncio.sleep(1.0)
            _s, mm_end = await caller.speak(mm)
            await asyncio.sleep(1.2)
            out["mm_trials"] += 1
            q_start, q_end = await caller.speak(over_q)
            asked.append((turn.first_audio or 0.0, q_start))
            onset = q_start + voiced_start(over_q)
            # the answer to the new question starts after q_end; the old one stopped before that
            await caller.wait_loud(q_end + 0.2, 20)
            loud = [t for t, r in caller.audio_rms if turn.first_audio < t <= q_end and r > caller.loud_threshold]
            last = max((t for t in loud if t >= onset - 0.05), default=None)
            if last is None:
                out["missed"] += 1
            else:
                # last loud 10 ms before a silence of >= 0.3 s that lasts into the new answer's start
                out["stop_ms"].append(round(1000 * (last - onset)))
            await caller.wait_quiet(1.5, timeout=30)
    finally:
        await caller.leave()
    await asyncio.sleep(1.0)  # the agent's last turn records
    out["mm_kept"] = kept_playing(stack, room, asked)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", default="out/bench")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(log_dir=out / "logs-bargein", http_port=free_port())
    print(f"load average {os.getloadavg()[0]:.2f}; starting the stack ...", flush=True)
    try:
        stack.start_all()
        res = asyncio.run(trials(stack, args.trials))
    finally:
        stack.stop()
    stops = res["stop_ms"]
    print(f"\nbarge-in over {len(stops)} trials: caller's voice -> avatar's audio stops: "
          f"median {statistics.median(stops) if stops else float('nan'):.0f} ms (each: {stops} ms); "
          f"missed {res['missed']}")
    print(f"a 150 ms 'hmm' over the answer left it playing in {res['mm_kept']} of {res['mm_trials']} trials")
    (out / "bargein.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
