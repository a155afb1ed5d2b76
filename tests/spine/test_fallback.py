"""The call never hangs on the avatar: with no avatar worker it goes on with audio only."""

from __future__ import annotations

import uuid

import pytest

from agent.caller import ScriptedCaller
from agent.devstack import Stack, free_port
from agent.token import caller_token

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
