"""The demo's recording shows the sync the caller got (harness.caller.audio_timeline, harness.avsync)."""

from __future__ import annotations

import numpy as np

from harness.avsync import offset_of
from harness.caller import RATE, audio_timeline


def _frames(n: int, t_first_end: float, stall_at: int | None = None, stall: float = 0.0,
            drop_at: int | None = None, drop: float = 0.0):
    """10 ms frames ending every 10 ms from ``t_first_end``; a stall delays reading (then catches up),
    a drop is a real gap in the stream."""
    out, t_gap = [], 0.0
    for i in range(n):
        if drop_at is not None and i == drop_at:
            t_gap += drop
        t = t_first_end + i * 0.01 + t_gap
        if stall_at is not None and stall_at <= i < stall_at + int(stall / 0.01):
            t = t_first_end + (stall_at + int(stall / 0.01)) * 0.01 + t_gap  # read in one burst
        out.append((np.full(160, i % 100 + 1, np.int16), t))
    return out


def test_a_busy_reader_does_not_push_the_audio_later():
    lay = audio_timeline(_frames(300, 2.01, stall_at=100, stall=0.3), t0=0.0)
    starts = [s for s, _ in lay]
    assert starts[0] == 2 * RATE  # the first frame starts at 2.00 s
    assert all(pcm.any() for _, pcm in lay) and len(lay) == 300  # no silence inserted
    assert starts[-1] == 2 * RATE + 299 * 160  # the last frame where it belongs


def test_a_real_gap_stays_a_gap():
    lay = audio_timeline(_frames(300, 2.01, drop_at=150, drop=0.5), t0=0.0)
    gaps = [(s, len(p)) for s, p in lay if not p.any() and len(p) > 160]
    assert len(gaps) == 1 and abs(gaps[0][1] - 0.5 * RATE) <= 1
    assert lay[-1][0] == 2 * RATE + 299 * 160 + int(0.5 * RATE)


def _bursts(seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Syllable-rate loudness on a 10 ms grid: bursts of 150-400 ms with pauses."""
    t = np.arange(0, seconds, 0.01)
    loud = np.zeros_like(t)
    i = 0
    while i < len(t):
        n = rng.integers(15, 40)
        loud[i : i + n] = rng.uniform(0.3, 1.0)
        i += n + rng.integers(5, 30)
    return t, loud


def test_offset_of_finds_a_known_shift():
    rng = np.random.default_rng(3)
    t, loud = _bursts(30, rng)
    for shift in (-0.12, 0.0, 0.08):
        tv = np.arange(0, 30, 0.04)  # 25 fps
        mouth = np.interp(tv - shift, t, loud) + rng.normal(0, 0.05, len(tv))
        got = offset_of(tv, mouth, t, loud)
        assert abs(got.offset_s - shift) <= 0.015, (shift, got)
        assert got.correlation > 0.8


async def test_the_callers_offset_is_the_one_it_saw_and_heard_not_when_its_loop_got_round_to_it():
    """A caller process that reads its audio in 100 ms bursts (a busy loop) makes the voice look
    ~45 ms late at arrival; on the played timeline (render times, audio laid out) the offset is
    the stream's own."""
    from harness.caller import ScriptedCaller, VideoSample

    t, loud = _bursts(30.0, np.random.default_rng(5))
    caller = ScriptedCaller("ws://unused", "token", avatar_identity="avatar")
    for shift in (-0.06, 0.0, 0.05):
        rows, chunks = [], []
        for i, (ti, li) in enumerate(zip(t, loud)):
            end = ti + 0.01
            read = (np.floor(i / 10) + 1) * 0.1 + 0.002  # ten frames at once, after the tenth has ended
            chunks.append(np.full(160, int(8000 * li), np.int16))
            rows.append((1000.0 + read, float(8000 * li)))
            assert read >= end - 1e-9
        caller._tracks = {"avatar": (rows, chunks)}
        tv = np.arange(0.02, 30, 0.04)  # 25 fps, shown at these times, read 5 ms later
        mouth = np.interp(tv - shift, t + 0.005, loud) * 10
        caller.video = [VideoSample(1000.0 + x + 0.005, float(m), 1000.0 + x) for x, m in zip(tv, mouth)]
        played = caller.av_offset(1000.0, 1031.0)
        read = caller.av_offset(1000.0, 1031.0, played=False)
        assert abs(played.offset_s - shift) <= 0.015, (shift, played)
        assert played.correlation > 0.8
        assert read.offset_s < shift - 0.025, (shift, read)  # the burst reads make the mouth look early
