"""A long run: callers asking questions continuously; figures per window, then growth.

    python -m bench.soak MINUTES [--calls 1] [--window 5] [--out out/soak]

Starts livekit-server, the admin (recording every call), the avatar and the agent workers, then N
scripted callers (own rooms) ask the bench questions one after another for MINUTES. Every
``--window`` minutes it prints, over that window: end of speech -> first answer audio (p50, p95),
video fps at the callers (median over answers), the A/V offset measured on the callers' side
(mouth motion against the audio envelope, harness/avsync.py; negative: mouth ahead) as the caller saw
and heard it (video at WebRTC's render time, audio laid out as played, the timeline of the demo's
MP4) and, in brackets, at the times this process read the frames (late when it is busy), the median time
the avatar's audio and video waited in the callers' WebRTC jitter buffers (inbound-rtp stats), turns lost,
and the resident memory of every process (livekit-server, admin, avatar, agent). At the end:
memory growth first -> last window, and the whole table in ``<out>/soak.json``.
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

import numpy as np

from agent.settings import AgentSettings
from agent.token import caller_token
from bench.calls import QUESTIONS, pct
from bench.hostile import rss_mb
from harness.caller import ScriptedCaller, synthesize
from harness.devstack import Stack, free_port


async def caller_loop(url: str, idx: int, speech: list[tuple[str, np.ndarray]], until: float, turns: list[dict],
                      av: list[dict], jitter: list[dict]) -> None:
    await asyncio.sleep(idx * 1.5)
    caller = ScriptedCaller(url, caller_token(f"soak-{idx}-{uuid.uuid4().hex[:6]}", f"caller-{idx}"))
    await caller.join()
    try:
        if not await caller.wait_video(timeout=60):
            turns.append({"t": time.time(), "lost": True, "why": "no video"})
            return
        await caller.wait_greeting(timeout=60)
        i, mark = 0, time.time()
        jb_prev = await caller.jitter_buffer_totals()
        while time.time() < until:
            q, pcm = speech[i % len(speech)]
            i += 1
            try:
                turn = await caller.ask(q, pcm, answer_timeout=20)
                turns.append({"t": time.time(), "caller": idx, "lost": False,
                              "to_audio": turn.first_audio - turn.speech_end,
                              "fps": caller.fps(turn.first_audio, turn.answer_end)})
            except TimeoutError:
                turns.append({"t": time.time(), "caller": idx, "lost": True})
            if time.time() - mark > 60:  # the A/V offset over the last minute, then forget old samples
                now = time.time()
                try:
                    o = caller.av_offset(mark, now)  # as the caller saw and heard it
                    raw = caller.av_offset(mark, now, played=False)  # as this process read the frames
                    av.append({"t": now, "caller": idx, "offset_ms": 1000 * o.offset_s, "r": o.correlation,
                               "arrival_ms": 1000 * raw.offset_s, "arrival_r": raw.correlation})
                except (ValueError, IndexError):  # too little speech in that minute to measure
                    pass
                except Exception as exc:  # a figure must not end the run
                    print(f"A/V offset not measured: {exc!r}", flush=True)
                jb = await caller.jitter_buffer_totals()  # how long each kind waited in this caller's buffer
                for kind, (total, n) in jb.items():
                    t_prev, n_prev = jb_prev.get(kind, (0.0, 0))
                    if n > n_prev:
                        jitter.append({"t": now, "caller": idx, "kind": kind, "ms": 1000 * (total - t_prev) / (n - n_prev)})
                jb_prev = jb
                caller.trim(before=time.time() - 5)
                mark = time.time()
            await asyncio.sleep(0.5)
    finally:
        await caller.leave()


def window_row(turns: list[dict], av: list[dict], t0: float, t1: float, mem: dict[str, float],
               jitter: list[dict]) -> dict:
    ok = [x for x in turns if t0 <= x["t"] < t1 and not x["lost"]]
    lost = sum(1 for x in turns if t0 <= x["t"] < t1 and x["lost"])
    lat = [x["to_audio"] for x in ok]
    offs = [x["offset_ms"] for x in av if t0 <= x["t"] < t1 and x["r"] > 0.2]
    raw = [x["arrival_ms"] for x in av if t0 <= x["t"] < t1 and x["arrival_r"] > 0.2]
    return {"turns": len(ok), "lost": lost, "p50_s": pct(lat, 50), "p95_s": pct(lat, 95),
            "fps_median": statistics.median([x["fps"] for x in ok]) if ok else None,
            "av_offset_ms": [round(min(offs)), round(max(offs))] if offs else None,
            "av_offset_arrival_ms": [round(min(raw)), round(max(raw))] if raw else None,
            "jitter_buffer_ms": {k: round(statistics.median(v)) for k, v in _by_kind(jitter, t0, t1).items()},
            "rss_mb": mem}


def _by_kind(jitter: list[dict], t0: float, t1: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for x in jitter:
        if t0 <= x["t"] < t1:
            out.setdefault(x["kind"], []).append(x["ms"])
    return out


def fmt(i: int, r: dict) -> str:
    s = lambda v: "   -" if v is None else f"{v:4.2f}"  # noqa: E731
    span = lambda v: "-" if v is None else f"{v[0]:+d}..{v[1]:+d} ms"  # noqa: E731
    av = f"{span(r['av_offset_ms'])} (read here: {span(r.get('av_offset_arrival_ms'))})"
    mem = " ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items())
    jb = " ".join(f"{k} {v}" for k, v in sorted(r.get("jitter_buffer_ms", {}).items())) or "-"
    fps = "-" if r["fps_median"] is None else f"{r['fps_median']:.1f}"
    return (f"window {i:2d}: {r['turns']:3d} turns, {r['lost']} lost, p50 {s(r['p50_s'])} s, p95 {s(r['p95_s'])} s, "
            f"fps {fps}, A/V {av}, caller's jitter buffer ms: {jb}; MB: {mem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minutes", type=float)
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--window", type=float, default=5.0, help="minutes per printed window")
    ap.add_argument("--out", default="out/soak")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = AgentSettings()
    speech = [(q, synthesize(q, s.model_path(s.piper_voice))) for q in QUESTIONS]
    stack = Stack(log_dir=out / "logs", http_port=free_port(),
                  env={"AGENT_MAX_CALLS": str(max(2, args.calls)), "AVATAR_MAX_CALLS": str(max(2, args.calls))})
    print(f"soak: {args.minutes:.0f} min, {args.calls} call(s), load average {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    turns: list[dict] = []
    av: list[dict] = []
    jitter: list[dict] = []
    try:
        stack.start_with_admin(out / "admin")
        procs = {p.name: p.popen.pid for p in stack.procs}

        async def run() -> None:
            t_start = time.time()
            until = t_start + 60 * args.minutes
            tasks = [asyncio.create_task(caller_loop(stack.url, i, speech, until, turns, av, jitter)) for i in range(args.calls)]
            edge = t_start
            while time.time() < until or not all(t.done() for t in tasks):
                await asyncio.sleep(5)
                if time.time() - edge >= 60 * args.window or all(t.done() for t in tasks):
                    mem = {n: rss_mb(pid) for n, pid in procs.items()}
                    rows.append(window_row(turns, av, edge, time.time(), mem, jitter))
                    print(fmt(len(rows), rows[-1]), flush=True)
                    edge = time.time()
                    if all(t.done() for t in tasks):
                        break
            for t in tasks:
                if t.done() and t.exception() is not None:
                    print(f"caller failed: {t.exception()!r}")

        asyncio.run(run())
    finally:
        stack.stop()
    if len(rows) >= 2:
        growth = {n: 100 * (rows[-1]["rss_mb"][n] - rows[0]["rss_mb"][n]) / max(1.0, rows[0]["rss_mb"][n])
                  for n in rows[0]["rss_mb"]}
        print("memory growth first -> last window: " + ", ".join(f"{n} {g:+.1f} %" for n, g in growth.items()))
    else:
        growth = {}
    lost = sum(1 for x in turns if x["lost"])
    print(f"{sum(1 for x in turns if not x['lost'])} turns answered, {lost} lost")
    (out / "soak.json").write_text(json.dumps({"minutes": args.minutes, "calls": args.calls, "windows": rows,
                                               "growth_pct": growth, "lost": lost}, indent=2))
    print(f"wrote {out / 'soak.json'}")


if __name__ == "__main__":
    main()
