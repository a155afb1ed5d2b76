"""A call that arrives while every avatar worker is full still gets its face once one frees up.

LiveKit offers a dispatch to the workers once: with the avatar worker at capacity nobody takes
it, and the call would stay audio-only for good. The agent dispatches again while the avatar has
not joined (`agent/avatar_link.py`), within `AGENT_AVATAR_JOIN_TIMEOUT`.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agent.caller import ScriptedCaller
from agent.token import caller_token
from tests.conftest import running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from running_stack(tmp_path_factory, {"AVATAR_MAX_CALLS": "1", "AGENT_MAX_CALLS": "3",
                                                "AGENT_AVATAR_JOIN_TIMEOUT": "40"})


async def test_a_call_waiting_for_a_full_avatar_worker_gets_the_face_when_one_frees_up(stack):
    first = ScriptedCaller(stack.url, caller_token(f"cap-{uuid.uuid4().hex[:6]}", "caller"))
    await first.join()
    assert await first.wait_video(timeout=60), "the first call's avatar never arrived"
    second = ScriptedCaller(stack.url, caller_token(f"cap-{uuid.uuid4().hex[:6]}", "caller"))
    try:
        await second.join()
        # the only avatar slot is taken: the second call waits (its agent has not gone audio-only)
        assert not await second.wait_video(timeout=6), "the avatar worker took a call beyond its capacity"
        t_free = time.time()
        await first.leave()
        assert await second.wait_video(timeout=40), "the second call never got its avatar after the first ended"
        print(f"second call's avatar joined {time.time() - t_free:.1f} s after the first call ended")
        await second.wait_greeting(timeout=40)  # and its agent speaks through it
    finally:
        await second.leave()
        if first.room.isconnected():
            await first.leave()
