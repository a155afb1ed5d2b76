"""Hostile input on the caller's side (bench/hostile.py, bounded for CI): noise, silence, clipping,
two minutes of talk without a pause (here scaled down), an injection attempt, a card number read
out, an 8 kHz and a stereo microphone. No crash, no stuck turn, the card number never said back,
the agent's memory bounded."""

from __future__ import annotations

import pytest

from bench.hostile import run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from harness.devstack import Stack, free_port

    tmp = tmp_path_factory.mktemp("hostile")
    s = Stack(log_dir=tmp / "logs", http_port=free_port())
    try:
        values = s.start_with_admin(tmp / "admin")
        yield s, values
    finally:
        s.stop()


async def test_hostile_caller_input_crashes_nothing_and_leaves_no_turn_stuck(stack):
    s, values = stack
    summary = await run(s, scale=0.15, admin=values)
    for r in summary["results"]:
        print(r)
    print({k: v for k, v in summary.items() if k != "results"})
    assert summary["cases"] == 8
    assert summary["crashes"] == 0, [r for r in summary["results"] if r["crashed"]]
    assert summary["stuck_turns"] == 0, [r for r in summary["results"] if r["stuck"]]
    assert not summary["card_said_back"]
    mem = summary["agent_rss_mb"]
    # three calls, minutes of noise and talk: measured +250 and +350 MB (first calls warm caches); a buffer
    # that grew with what the caller sends would pass this in the full-length bench (bench.hostile)
    assert mem["end"] - mem["start"] < 600, mem
