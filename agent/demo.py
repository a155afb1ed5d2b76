"""The main job: a scripted call through the whole stack on this machine.

    python -m agent.demo [--out out] [--engine portrait]

Starts livekit-server and both workers, joins as a caller that asks three
spoken questions, and writes ``out/demo.mp4`` (avatar video + agent audio as
the caller received them), ``out/transcript.json`` and a per-turn latency table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import time
import uuid
from pathlib import Path

from .caller import ScriptedCaller, synthesize
from .devstack import Stack, free_port
from .settings import AgentSettings
from .token import caller_token

QUESTIONS = [
    "What are your opening hours?",
    "How do I report a lost card?",
    "Where is the nearest branch?",
]


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.0f}"


def print_table(turns: list[dict]) -> None:
    print("\nPer-turn latency (caller's clock, ms from the end of the caller's speech)")
    print(f"{'#':>2}  {'question':<34} {'->audio':>8} {'->video':>8}")
    for i, t in enumerate(turns, 1):
        print(f"{i:>2}  {t['question'][:34]:<34} {_fmt(t['to_first_audio_ms']):>8} {_fmt(t['to_first_video_ms']):>8}")
    for key, label in (("to_first_audio_ms", "->audio"), ("to_first_video_ms", "->video")):
        vals = [t[key] for t in turns if t[key] is not None]
        if vals:
            print(f"median {label}: {statistics.median(vals):.0f} ms")


def fetch_session(admin: dict[str, str], room: str, timeout: float = 20.0) -> dict | None:
    """The call as the admin API recorded it (turns, redacted text, per-stage latency)."""
    import httpx

    h = {"X-API-Key": admin["DH_ADMIN_VIEWER_KEY"]}
    base = admin["DH_ADMIN_URL"].rstrip("/") + "/api/v1"
    deadline = time.time() + timeout
    while time.time() < deadline:
        items = httpx.get(f"{base}/sessions", params={"room": room}, headers=h, timeout=10).json().get("items", [])
        if items and items[0].get("ended_at"):
            return httpx.get(f"{base}/sessions/{items[0]['id']}", headers=h, timeout=10).json()
        time.sleep(0.5)
    return None


def print_session(d: dict) -> None:
    print(f"\nrecorded by the admin API: session {d['id']} outcome={d['outcome']} turns={len(d['turns'])}")
    for t in d["turns"]:
        lat = " ".join(f"{k}={v:.2f}" for k, v in t["latency"].items() if isinstance(v, (int, float)))
        print(f"  #{t['seq']:<2} {t['speaker']:<9} {t['text'][:48]!r:<50} {lat}")


async def run_call(url: str, out: Path, questions: list[str], metadata: dict | None = None) -> dict:
    settings = AgentSettings()
    voice = settings.model_path(settings.piper_voice)
    speech = [synthesize(q, voice) for q in questions]
    room = f"demo-{uuid.uuid4().hex[:6]}"
    caller = ScriptedCaller(url, caller_token(room, "caller", metadata=metadata), record_path=out / "demo.mp4")
    await caller.join()
    t_join = time.time()
    has_video = await caller.wait_video(timeout=60)
    print(f"avatar video {'arrived' if has_video else 'did NOT arrive'} {time.time() - t_join:.1f} s after joining")
    try:
        await caller.wait_greeting()
        for q, pcm in zip(questions, speech):
            turn = await caller.ask(q, pcm)
            print(f"asked {q!r}: answer after {1000 * (turn.first_audio - turn.speech_end):.0f} ms", flush=True)
            await asyncio.sleep(0.5)
    finally:
        await caller.leave()
    turns = [t.as_dict() for t in caller.turns]
    for t, turn in zip(turns, caller.turns):
        t["video_fps"] = round(caller.fps(turn.first_audio or turn.speech_end, turn.answer_end or time.time()), 1)
    trace = {
        "t0": caller.t0,
        "mouth_motion": [(round(t - caller.t0, 3), round(d, 2)) for t, d in caller.mouth_motion(0, time.time())],
        "audio_rms": [(round(t - caller.t0, 3), round(r)) for t, r in caller.audio_rms],
    }
    (out / "av_trace.json").write_text(json.dumps(trace))
    return {"room": room, "turns": turns, "transcripts": caller.transcripts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--engine", default=os.environ.get("AVATAR_ENGINE", "portrait"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(log_dir=out / "logs", http_port=free_port(), env={"AVATAR_ENGINE": args.engine})
    print(f"starting livekit-server and workers (logs in {out / 'logs'}) ...", flush=True)
    t0 = time.perf_counter()
    try:
        admin = stack.start_admin(out / "admin")
        stack.start_all()
        print(f"stack up in {time.perf_counter() - t0:.1f} s (admin at {admin['DH_ADMIN_URL']}); calling ...", flush=True)
        result = asyncio.run(run_call(stack.url, out, QUESTIONS, metadata={"avatar_id": admin["DH_AVATAR_ID"]}))
        recorded = fetch_session(admin, result["room"])
    finally:
        stack.stop()
    result["recorded_session"] = recorded
    (out / "transcript.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print_table(result["turns"])
    if recorded:
        print_session(recorded)
    else:
        print("\nthe admin API has no record of the call (see out/logs/agent.log)")
    print(f"\nwrote {out / 'demo.mp4'} and {out / 'transcript.json'}")


if __name__ == "__main__":
    main()
