"""The call never hangs on the avatar: with no avatar worker it goes on with audio only."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest

from agent.token import caller_token
from harness.caller import ScriptedCaller
from harness.devstack import Stack, free_port
from tests.conftest import transcribe

pytestmark = pytest.mark.e2e


async def test_without_an_avatar_worker_the_agent_still_answers(tmp_path, say):
    stack = Stack(log_dir=tmp_path, http_port=free_port(), env={"AGENT_AVATAR_JOIN_TIMEOUT": "3"})
    stack.start_server()
    try:
        stack.start_worker("agent")  # no avatar worker registered under dh-avatar
        caller = ScriptedCaller(stack.url, caller_token(f"noavatar-{uuid.uuid4().hex[:6]}", "caller"))
        await caller.join()
        try:
            await caller.wait_greeting(timeout=40)
            turn = await caller.ask("Where is the nearest branch?", say("Where is the nearest branch?"))
        finally:
            await caller.leave()
    finally:
        stack.stop()
    assert caller.avatar_identity is None and not caller.video
    assert turn.first_audio is not None and turn.first_audio - turn.speech_end < 10
    log = (tmp_path / "agent.log").read_text()
    assert "did not join within 3.0 s" in log


async def test_when_the_avatar_dies_mid_call_the_agent_goes_on_speaking(tmp_path, say, whisper):
    stack = Stack(log_dir=tmp_path, http_port=free_port())
    try:
        stack.start_all()
        caller = ScriptedCaller(stack.url, caller_token(f"avatardies-{uuid.uuid4().hex[:6]}", "caller"))
        await caller.join()
        try:
            assert await caller.wait_video(timeout=60)
            await caller.wait_greeting()
            avatar = next(p for p in stack.procs if p.name == "avatar")
            avatar.popen.kill()  # a crash, not a clean exit
            avatar.popen.wait(10)
            await asyncio.sleep(3.0)  # the server notices the avatar's connection is gone
            start, end = await caller.speak(say("Where is the nearest branch?"))
            agent_id = next(i for i in caller._tracks if i.startswith("agent-"))
            rms = caller._tracks[agent_id][0]
            deadline = time.time() + 30
            answer = None
            while time.time() < deadline and answer is None:
                answer = next((t for t, r in rms if t > end and r > caller.loud_threshold), None)
                await asyncio.sleep(0.1)
            while answer is not None and time.time() < deadline:  # let the answer finish
                if time.time() - max(t for t, r in rms if r > caller.loud_threshold) > 1.5:
                    break
                await asyncio.sleep(0.1)
        finally:
            await caller.leave()
    finally:
        stack.stop()
    assert answer is not None, "silence after the avatar died"
    assert "switching to audio only" in (tmp_path / "agent.log").read_text()
    # the answer the dead avatar swallowed is said again, on the agent's own track
    heard = transcribe(whisper, np.concatenate([c for (t, _), c in zip(rms, caller._tracks[agent_id][1]) if t >= answer]))
    assert "harbo" in heard and "station" in heard, heard  # Whisper writes harbor or harbour
