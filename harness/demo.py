"""The main job: a scripted call through the whole stack on this machine.

    python -m harness.demo [--out out] [--engine portrait]

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
from pathlib import Path

import numpy as np

from agent.settings import AgentSettings

from .avsync import measure as measure_av_offset
from .caller import ScriptedCaller, synthesize
from .devstack import Stack, free_port

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


def demo_portrait(data_dir: Path) -> Path:
    """The demo avatar's portrait, uploaded through the admin API (skimage's public-domain astronaut)."""
    from PIL import Image

    from avatar.engines.portrait.samples import photo

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo-portrait.png"
    if not path.is_file():
        Image.fromarray(photo()).save(path)
    return path


def console_login(data_dir: Path) -> tuple[str, str]:
    """The demo organisation's console sign-in: made once, kept next to its database (mode 600)."""
    import secrets

    data_dir.mkdir(parents=True, exist_ok=True)
    f = data_dir / "console-login.txt"
    if f.is_file() and len(parts := f.read_text().split()) == 2:
        return parts[0], parts[1]
    login = ("demo@dh-agent.example", secrets.token_urlsafe(12))
    f.write_text(" ".join(login))
    f.chmod(0o600)
    return login


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


def admin_caller_token(admin: dict[str, str]) -> tuple[str, str]:
    """A caller's token for the demo avatar, minted by the admin API (it dispatches the agent
    with the call's signed session grant): (room, token)."""
    import httpx

    r = httpx.post(admin["DH_ADMIN_URL"].rstrip("/") + "/api/v1/tokens/livekit",
                   headers={"X-API-Key": admin["DH_ADMIN_API_KEY"]},
                   json={"avatar_id": admin["DH_AVATAR_ID"], "name": "demo caller"}, timeout=10)
    r.raise_for_status()
    body = r.json()
    return body["room"], body["token"]


STAGES = [  # (label, turn, metric): the admin's per-turn figures, in the order they happen
    ("ASR done (VAD end + Whisper)", "user", "transcription_delay"),
    ("end of turn decided", "user", "end_of_turn_delay"),
    ("policy first text", "assistant", "llm_node_ttft"),
    ("TTS first audio", "assistant", "tts_node_ttfb"),
    ("avatar playing (after 1st audio)", "assistant", "playback_latency"),
    ("agent: speech end -> playing", "assistant", "e2e_latency"),
]


def print_waterfall(recorded: dict | None, turns: list[dict], whisper: list[float]) -> None:
    """Per-stage figures of each answered turn, from the admin record and the caller's clock."""
    if not recorded:
        return
    pairs: list[tuple[dict, dict]] = []
    user = None
    for t in recorded["turns"]:
        if t["speaker"] in ("user", "caller"):
            user = t
        elif t["speaker"] in ("assistant", "agent") and user is not None:
            pairs.append((user, t))
            user = None
    print("\nPer-stage waterfall (ms from the end of the caller's speech; 'avatar playing' is its own step)")
    head = f"{'stage':<34}" + "".join(f"{'#' + str(i + 1):>8}" for i in range(len(pairs))) + f"{'median':>8}"
    print(head)
    rows = [(label, [(u if who == "user" else a)["latency"].get(key) for u, a in pairs]) for label, who, key in STAGES]
    rows.insert(1, ("  of which Whisper compute", whisper[: len(pairs)]))
    at_caller = [t["to_first_audio_ms"] / 1000 if t["to_first_audio_ms"] is not None else None for t in turns]
    rows.append(("first audio at the caller", at_caller[: len(pairs)]))
    net = [c - a["latency"]["e2e_latency"] if c is not None and a["latency"].get("e2e_latency") is not None else None
           for c, (_, a) in zip(at_caller, pairs)]
    rows.append(("  network + playout (caller - agent)", net))
    video = [t["to_first_video_ms"] / 1000 if t["to_first_video_ms"] is not None else None for t in turns]
    rows.append(("first speaking video frame", video[: len(pairs)]))
    for label, vals in rows:
        got = [v for v in vals if isinstance(v, (int, float))]
        cells = "".join(f"{1000 * v:8.0f}" if isinstance(v, (int, float)) else f"{'-':>8}" for v in vals)
        med = f"{1000 * statistics.median(got):8.0f}" if got else f"{'-':>8}"
        print(f"{label:<34}{cells}{med}")


def whisper_seconds(log: Path) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"asr_seconds"' in line:
            try:
                out.append(float(json.loads(line)["asr_seconds"]))
            except (ValueError, KeyError):
                pass
    return out


async def run_call(url: str, out: Path, questions: list[str], room: str, token: str) -> dict:
    settings = AgentSettings()
    voice = settings.model_path(settings.piper_voice)
    speech = [synthesize(q, voice) for q in questions]
    caller = ScriptedCaller(url, token, record_path=out / "demo.mp4")
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
    if caller.render_lag:
        print(f"video frames read {1000 * float(np.median(caller.render_lag)):.0f} ms (median) after WebRTC's render time")
    figures = {}
    for key, played in (("av_offset_live_ms", True), ("av_offset_read_ms", False)):
        try:
            figures[key] = round(1000 * caller.av_offset(0, time.time(), played=played).offset_s)
        except ValueError:  # too short a call to measure
            figures[key] = None
    return {"room": room, "turns": turns, "transcripts": caller.transcripts, "mouth_box": caller.mouth_box,
            **figures}


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
        login = console_login(out / "admin")
        admin = stack.start_admin(out / "admin", portrait=demo_portrait(out / "admin"),
                                  extra_env={"ADMIN_FIRST_ADMIN_EMAIL": login[0], "ADMIN_FIRST_ADMIN_PASSWORD": login[1]})
        stack.start_all()
        print(f"stack up in {time.perf_counter() - t0:.1f} s (admin at {admin['DH_ADMIN_URL']}); calling ...", flush=True)
        room, token = admin_caller_token(admin)
        result = asyncio.run(run_call(stack.url, out, QUESTIONS, room, token))
        recorded = fetch_session(admin, result["room"])
    finally:
        stack.stop()
    result["recorded_session"] = recorded
    print_table(result["turns"])
    print_waterfall(recorded, result["turns"], whisper_seconds(out / "logs" / "agent.log"))
    if recorded:
        print_session(recorded)
    else:
        print("\nthe admin API has no record of the call (see out/logs/agent.log)")
    if result["mouth_box"] and (out / "demo.mp4").exists():
        off = measure_av_offset(out / "demo.mp4", tuple(result["mouth_box"]))
        result["av_offset_ms"] = round(1000 * off.offset_s)
        print(f"\n{out / 'demo.mp4'}: {off}")
    if result.get("av_offset_live_ms") is not None:
        read = result.get("av_offset_read_ms")
        print(f"as the call arrived (the caller's own trace, as played): A/V offset {result['av_offset_live_ms']:+d} ms"
              + (f" (at the times the caller's process read the frames: {read:+d} ms)" if read is not None else ""))
    (out / "transcript.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {out / 'demo.mp4'} and {out / 'transcript.json'}")
    print(f"\nthe operators' console, with this call in it:\n"
          f"  ADMIN_DATA_DIR={out / 'admin'} ADMIN_DATABASE_URL= .venv/bin/python -m admin serve --port 8000\n"
          f"  then open http://127.0.0.1:8000/console/ and sign in as {login[0]} / {login[1]}\n"
          f"  (the demo organisation's admin; the password is kept in {out / 'admin' / 'console-login.txt'})")


if __name__ == "__main__":
    main()
