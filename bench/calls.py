"""N simultaneous callers through the real stack: what each of them experiences.

    python -m bench.calls 1 2 4 [--questions 3] [--stagger 1.5] [--out out/bench]

Starts livekit-server, the avatar worker and the agent worker once (as `make demo`
does), then for each N runs N scripted callers in their own rooms, joining
``--stagger`` seconds apart, each asking ``--questions`` spoken questions. Prints, per N:
join -> first avatar frame, end of speech -> first answer audio (p50/p95/max),
video fps at the callers (min/median over the answers), turns lost, the agent's
per-stage figures (medians), the CPU each part used and each part's peak resident memory
during the calls beside its memory before the first call (models loaded once per worker,
so what a call adds is the difference). Figures go to ``<out>/calls-N.json`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from agent.settings import AgentSettings
from agent.token import caller_token
from bench.hostile import cpu_seconds, rss_mb
from harness.caller import ScriptedCaller, synthesize
from harness.devstack import Stack, free_port

QUESTIONS = [
    "What are your opening hours?",
    "How do I report a lost card?",
    "Where is the nearest branch?",
    "Can I open an account online?",
    "What is the fee for an international transfer?",
]


def pct(vals: list[float], q: float) -> float | None:
    return float(np.percentile(vals, q)) if vals else None


def _ms(v: float | None) -> str:
    return "    -" if v is None else f"{1000 * v:5.0f}"


async def one_caller(url: str, idx: int, delay: float, speech: list[tuple[str, np.ndarray]],
                     answer_timeout: float) -> dict:
    await asyncio.sleep(delay)
    room = f"bench-{idx}-{uuid.uuid4().hex[:6]}"
    caller = ScriptedCaller(url, caller_token(room, f"caller-{idx}"))
    res: dict = {"room": room, "turns": [], "lost": 0}
    t_join = time.time()
    await caller.join()
    try:
        if not await caller.wait_video(timeout=60):
            res["join_to_video"] = None
            res["lost"] = len(speech)
            return res
        res["join_to_video"] = caller.video[0].t - t_join
        try:
            await caller.wait_greeting(timeout=30)
        except TimeoutError:
            res["greeting"] = False
        for q, pcm in speech:
            try:
                turn = await caller.ask(q, pcm, answer_timeout=answer_timeout)
            except TimeoutError:
                res["lost"] += 1
                continue
            first_video = turn.first_video
            res["turns"].append({
                "question": q,
                "to_audio": turn.first_audio - turn.speech_end,
                "video_after_audio": None if first_video is None else first_video - turn.first_audio,
                "fps": caller.fps(turn.first_audio, turn.answer_end),
            })
            await asyncio.sleep(0.5)
    finally:
        await caller.leave()
    return res


def agent_stages(log: Path, rooms: set[str], offset: int = 0) -> dict[str, list[float]]:
    """The agent's per-turn metrics for these rooms (and its Whisper compute times after
    ``offset`` bytes of the log), from its JSON log lines."""
    out: dict[str, list[float]] = {}
    with open(log, errors="replace") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    for line in lines:
        if '"metrics"' not in line and '"asr_seconds"' not in line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "asr_seconds" in rec:
            out.setdefault("whisper_compute", []).append(float(rec["asr_seconds"]))
            continue
        if rec.get("room") not in rooms or not isinstance(rec.get("metrics"), dict):
            continue
        for k, v in rec["metrics"].items():
            if isinstance(v, (int, float)) and not k.endswith("_at"):
                out.setdefault(k, []).append(float(v))
    return out


async def run_n(url: str, n: int, stagger: float, speech: list[tuple[str, np.ndarray]], timeout: float) -> list[dict]:
    return await asyncio.gather(*(one_caller(url, i, i * stagger, speech, timeout) for i in range(n)))


def summarise(n: int, results: list[dict], stages: dict[str, list[float]]) -> dict:
    to_audio = [t["to_audio"] for r in results for t in r["turns"]]
    fps = [t["fps"] for r in results for t in r["turns"]]
    joins = [r["join_to_video"] for r in results if r.get("join_to_video") is not None]
    av = [t["video_after_audio"] for r in results for t in r["turns"] if t["video_after_audio"] is not None]
    summary = {
        "calls": n,
        "join_to_video_max": max(joins) if len(joins) == n else None,
        "join_to_video": joins,
        "to_audio_p50": pct(to_audio, 50), "to_audio_p95": pct(to_audio, 95),
        "to_audio_max": max(to_audio) if to_audio else None,
        "fps_min": min(fps) if fps else None, "fps_median": statistics.median(fps) if fps else None,
        "first_video_after_audio_median": statistics.median(av) if av else None,
        "turns": len(to_audio), "turns_lost": sum(r["lost"] for r in results),
        "stages_median": {k: statistics.median(v) for k, v in stages.items()},
    }
    return summary


def print_summary(s: dict) -> None:
    print(f"\n== {s['calls']} simultaneous call(s): {s['turns']} answered turns, {s['turns_lost']} lost")
    jv = s["join_to_video"]
    print(f"join -> first avatar frame: max {_ms(s['join_to_video_max'])} ms "
          f"(each: {', '.join(f'{1000 * v:.0f}' for v in jv)} ms)")
    print(f"end of speech -> first answer audio: p50 {_ms(s['to_audio_p50'])} ms  p95 {_ms(s['to_audio_p95'])} ms  "
          f"max {_ms(s['to_audio_max'])} ms")
    if s["fps_min"] is not None:
        print(f"video fps at the callers over the answers: min {s['fps_min']:.1f}  median {s['fps_median']:.1f}")
    if s["first_video_after_audio_median"] is not None:
        print(f"first speaking video frame after first answer audio: median "
              f"{1000 * s['first_video_after_audio_median']:.0f} ms")
    if s.get("rss_peak_mb"):
        idle = s.get("rss_idle_mb", {})
        print("memory, peak during the calls (MB; before the first call): "
              + "  ".join(f"{k} {v:.0f} ({idle.get(k, 0):.0f})" for k, v in s["rss_peak_mb"].items()))
    if s.get("cores_used"):
        used = s["cores_used"]
        print(f"CPU cores busy over the run ({os.cpu_count()} here): " + "  ".join(f"{k} {v:.2f}" for k, v in used.items())
              + f"  = {sum(used.values()):.2f}")
    st = s["stages_median"]
    if st:
        print("agent stages (median, ms): " + "  ".join(f"{k}={1000 * v:.0f}" for k, v in sorted(st.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("calls", nargs="*", type=int, default=[1, 2, 4])
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--stagger", type=float, default=1.5, help="seconds between two callers' joins")
    ap.add_argument("--answer-timeout", type=float, default=15.0, help="a question unanswered this long is lost")
    ap.add_argument("--out", default="out/bench")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = AgentSettings()
    voice = settings.model_path(settings.piper_voice)
    qs = (QUESTIONS * 3)[: args.questions]
    speech = [(q, synthesize(q, voice)) for q in qs]
    stack = Stack(log_dir=out / "logs", http_port=free_port(), env={"AGENT_MAX_CALLS": str(max(args.calls)), "AVATAR_MAX_CALLS": str(max(args.calls))})
    print(f"starting livekit-server and workers (logs in {out / 'logs'}); load average "
          f"{os.getloadavg()[0]:.2f} ...", flush=True)
    summaries = []
    try:
        stack.start_all()
        procs = {p.name: p.popen.pid for p in stack.procs}
        idle = {k: round(rss_mb(v)) for k, v in procs.items()}  # models loaded, no call yet
        for n in args.calls:
            offset = (stack.log_dir / "agent.log").stat().st_size
            # CPU per part of the stack over this N; the callers are this process (its children are the stack)
            pids = {p.name: p.popen.pid for p in stack.procs} | {"callers": os.getpid()}
            def used(pids: dict[str, int] = pids) -> dict[str, float]:
                return {k: cpu_seconds(v, children=k != "callers") for k, v in pids.items()}

            cpu0, t0 = used(), time.monotonic()
            peak = dict.fromkeys(procs, 0.0)
            done = threading.Event()

            def sample(peak: dict[str, float] = peak, done: threading.Event = done) -> None:
                while not done.wait(0.5):  # resident memory of each part, every 0.5 s, while the calls run
                    for k, v in procs.items():
                        peak[k] = max(peak[k], rss_mb(v))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                results = asyncio.run(run_n(stack.url, n, args.stagger, speech, args.answer_timeout))
            finally:
                done.set()
                sampler.join()
            wall = time.monotonic() - t0
            cores = {k: (v - cpu0[k]) / wall for k, v in used().items()}
            time.sleep(1.0)  # the agent's last log lines
            stages = agent_stages(stack.log_dir / "agent.log", {r["room"] for r in results}, offset)
            s = summarise(n, results, stages)
            s["load_average_after"] = os.getloadavg()[0]
            s["cores_used"] = {k: round(v, 2) for k, v in cores.items()}
            s["rss_idle_mb"], s["rss_peak_mb"] = idle, {k: round(v) for k, v in peak.items()}
            (out / f"calls-{n}.json").write_text(json.dumps({"summary": s, "callers": results}, indent=2))
            print_summary(s)
            summaries.append(s)
            time.sleep(2.0)
    finally:
        stack.stop()
    print(f"\nwrote {out}/calls-N.json")


if __name__ == "__main__":
    main()
