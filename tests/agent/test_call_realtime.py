"""The call at human pace, through a real livekit-server, the real agent and the real avatar worker.

Timing targets are the benchmarks' (`python -m bench.calls`, `make demo`); these tests
assert the behaviour behind them: a mid-sentence pause is not the end of the turn,
barge-in stops the avatar while a short sound does not, two callers share one set of
models, and the recording keeps audio and video together.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

import numpy as np
import pytest

from agent.token import caller_token
from harness.avsync import measure
from harness.caller import RATE, ScriptedCaller
from tests.conftest import running_stack, transcribe

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack with room for the calls of this module that may still be ending (a job outlives its
    caller by a few seconds): the workers' default of 2 calls would refuse the next avatar."""
    yield from running_stack(tmp_path_factory, {"AGENT_MAX_CALLS": "4", "AVATAR_MAX_CALLS": "4"})


async def joined(url: str, **kw) -> ScriptedCaller:
    caller = ScriptedCaller(url, caller_token(f"rt-{uuid.uuid4().hex[:6]}", "caller"), **kw)
    await caller.join()
    assert await caller.wait_video(timeout=60), "the avatar's video track never arrived"
    await caller.wait_greeting()
    await asyncio.sleep(0.5)
    await caller.wait_quiet(quiet_for=1.5)  # a greeting's second sentence can follow a gap on a busy machine
    return caller


async def test_a_pause_in_mid_sentence_is_not_the_end_of_the_turn(stack, say, whisper, tmp_path):
    first, rest = say("I would like to know, um,"), say("what are your opening hours?")
    pause = np.zeros(int(0.6 * RATE), np.int16)
    caller = await joined(stack.url, record_path=tmp_path / "call.mp4")
    try:
        start, end = await caller.speak(np.concatenate([first, pause, rest]))
        pause_from = start + len(first) / RATE
        answer = await caller.wait_loud(end)
        assert answer is not None, "no answer"
        answer_end = await caller.wait_quiet()
        # the whole answer's captions (they trail the audio; a false start on the first half, seen
        # under load, is followed by the real answer)
        spoken = await caller.wait_said(end, ("monday",), timeout=30)
    finally:
        await caller.leave()
    # nothing was said in the pause, or before the caller had finished
    early = caller.loud_since(pause_from)
    said = [(round(t["t"] + caller.t0 - start, 2), t["from"][:12], t["text"][:60]) for t in caller.transcripts]
    assert early is not None and early >= end, f"the agent spoke {early - pause_from:.2f} s into the pause: {said}"
    # one answer: the agent answered the whole question once, not its first half
    me = caller.room.local_participant.identity
    user_turns = [t for t in caller.transcripts if t["from"] == me]
    assert len(user_turns) <= 2 and "hours" in " ".join(t["text"].lower() for t in user_turns), said
    heard = transcribe(whisper, caller.audio_between(answer - 0.3, answer_end + 0.3))
    # what the caller heard (a loaded box can leave a gap mid-answer, ending wait_quiet early) or
    # the agent's captions of the answer it spoke
    assert "monday" in heard or "monday" in spoken, (heard, spoken, said)
    # The recording keeps the voice and the mouth together: the demo prints the figure (-56 ms on
    # a quiet box, target +-40 ms); under a CI machine's load the caller itself falls behind, so
    # this guards the class of error the recording had (seconds: audio laid out from its first
    # frame), not the last tens of milliseconds.
    off = measure(tmp_path / "call.mp4", caller.mouth_box)
    print(f"pause held: answer {answer - end:.2f} s after the end of speech; recording: {off}")
    assert abs(off.offset_s) <= 0.4 and off.correlation > 0.3, off


async def test_barge_in_stops_the_avatar_but_a_short_sound_does_not(stack, say, whisper):
    caller = await joined(stack.url)
    try:
        # a short "mm" (150 ms) over the long answer: it goes on
        turn = await caller.ask("How do I report a lost card?", say("How do I report a lost card?"),
                                wait_answer_end=False)
        await asyncio.sleep(1.2)
        mm = say("Hmm.")
        loud = np.flatnonzero(np.abs(mm) > 2000)
        mm = mm[loud[0] : loud[0] + int(0.15 * RATE)]
        _mm_start, mm_end = await caller.speak(mm)
        await asyncio.sleep(1.5)

        # a real question over the answer stops it, and the new answer follows
        q_start, q_end = await caller.speak(say("What are your opening hours?"))
        second = await caller.wait_loud(q_end)
        assert second is not None, "no answer to the question asked over the first one"
        answer_end = await caller.wait_quiet()
    finally:
        await caller.leave()
    rms = [(t, r) for t, r in caller.audio_rms if q_start <= t <= second]
    stopped = next((t for t, _ in rms if all(r2 < caller.loud_threshold for t2, r2 in rms if t <= t2 <= t + 0.5)), None)
    assert stopped is not None, "the avatar kept talking over the caller"
    print(f"barge-in: the avatar's audio stopped {1000 * (stopped - q_start):.0f} ms after the caller started")
    assert stopped > turn.first_audio  # it was the first answer that stopped
    # ... because it was interrupted, not because it had ended: the agent recorded it so, and its end
    # ("... open day and night.") was never said. How soon is bench.bargein's figure, not a test's:
    # CI measured 2.4 s on a machine whose Whisper ran 4x slower than on a quiet one.
    spoken = [r for r in stack.log_records("agent") if r.get("role") == "assistant" and r.get("room") == caller.room.name]
    # the greeting, then the first answer (the second one may still be playing when the caller left)
    assert [r.get("interrupted") for r in spoken][:2] == [False, True], [r.get("message") for r in spoken]
    assert "day and night" not in spoken[1]["message"], spoken[1]["message"]
    # the 150 ms sound did not stop it: the agent's own record says it was still speaking when the
    # question began (the caller's audio level cannot say this under load, where the next sentence's
    # synthesis can leave a gap of its own)
    stopped_at = spoken[1]["metrics"]["stopped_speaking_at"]
    assert stopped_at > q_start, f"a 150 ms sound stopped the answer {stopped_at - mm_end:+.2f} s after it ended"
    assert "monday" in transcribe(whisper, caller.audio_between(second - 0.3, answer_end + 0.3))


async def test_two_callers_at_once_share_one_set_of_models(stack, say, whisper):
    async def call(delay: float, question: str, expect: str) -> float:
        await asyncio.sleep(delay)
        caller = await joined(stack.url)
        try:
            # A caller who is not understood asks again, as people do: with two calls on two cores a
            # starved VAD can cut a question in two (seen once in CI: "What are you?" + "for opening
            # now."). The second try must be understood.
            for _attempt in (1, 2):
                t = time.time()
                turn = await caller.ask(question, say(question))
                said = await caller.wait_said(t, (expect,))
                # what the caller heard (a loaded box can leave a gap mid-answer) or the agent's captions of it
                heard = transcribe(whisper, caller.audio_between(turn.first_audio - 0.3, turn.answer_end + 5.0))
                if expect in heard or expect in said:
                    break
                print(f"not understood the first time: heard {heard!r}, captions {said!r}")
                await caller.wait_quiet(quiet_for=1.5)
        finally:
            await caller.leave()
        assert expect in heard or expect in said, (heard, said)
        return turn.first_audio - turn.speech_end

    a, b = await asyncio.gather(call(0.0, "What are your opening hours?", "monday"),
                                call(1.5, "Where is the nearest branch?", "harb"))
    print(f"two callers: answers after {a:.2f} s and {b:.2f} s")
    recs = stack.log_records("agent")
    # the models were loaded once for the worker, not once per call
    assert sum("call models loaded" in r.get("message", "") for r in recs) == 1
    # once calls were coming in, every new job thread started without loading anything
    first_job = next(i for i, r in enumerate(recs) if r.get("message") == "received job request")
    inits = [r["elapsed_time"] for r in recs[first_job:]
             if r.get("message") == "job runner initialized" and "elapsed_time" in r]
    assert inits and all(e < 1.0 for e in inits), inits
    # and two callers' utterances never ran two Whisper decodes at once
    done = [(datetime.fromisoformat(r["timestamp"]).timestamp(), r["asr_seconds"]) for r in recs if "asr_seconds" in r]
    spans = sorted((t - secs, t) for t, secs in done)
    assert len(spans) >= 2
    assert all(b0 >= a1 - 0.005 for (_a0, a1), (b0, _b1) in zip(spans, spans[1:])), spans
