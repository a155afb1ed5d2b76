"""Benchmark: ``python -m avatar.engines.portrait.bench [--frames N] [--width W] [--height H]``.

Runs one session on one thread (OpenCV threads = 1, process pinned to one core where the
OS allows) over a spoken sentence with pauses, and prints frames/s and CPU ms per frame
(``time.process_time``), plus the cost of a 25 fps stream as a share of one core.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--avatar", default=None, help="prepared avatar folder (default: the built-in one)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass

    from . import create_engine, samples

    audio = samples.speech()
    pause = np.zeros(16000, np.float32)
    audio = np.concatenate([pause, audio, pause])
    spf = 640
    chunks = [audio[i:i + spf] for i in range(0, len(audio) - spf + 1, spf)]
    # Speech vs pauses as the worker sends them: speaking=False on silence.
    speaking = [float(np.abs(c).max()) > 1e-4 for c in chunks]
    eng = create_engine(width=args.width, height=args.height, seed=0, threads=1)
    sess = eng.open_session(args.avatar)
    for i in range(50):  # warm up caches and the allocator
        sess.generate(chunks[i % len(chunks)], speaking=speaking[i % len(chunks)])
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(args.frames):
        j = i % len(chunks)
        frame = sess.generate(chunks[j], speaking=speaking[j])[0]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    assert frame.shape == (args.height, args.width, 3)
    ms = 1000 * cpu / args.frames
    print(f"portrait engine benchmark: {args.width}x{args.height}, {args.frames} frames, 1 thread")
    print(f"frames/s (wall): {args.frames / wall:.1f}")
    print(f"CPU ms/frame:    {ms:.2f}  (frames/s by CPU time: {1000 / ms:.1f})")
    print(f"one 25 fps stream uses {25 * ms / 10:.1f}% of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
