"""The FlashTalk engine inside the real avatar worker, in a real call (tiny random model on CPU)."""

from __future__ import annotations

import json
import uuid

import pytest

from agent.token import caller_token
from harness.caller import ScriptedCaller
from harness.devstack import Stack, free_port

pytestmark = pytest.mark.e2e


async def test_a_call_shows_flashtalk_frames(tiny_ckpt, tmp_path, say):
    options = {k: v for k, v in tiny_ckpt.items() if k not in ("width", "height")}
    stack = Stack(
        log_dir=tmp_path,
        http_port=free_port(),
        env={
            "AVATAR_ENGINE": "flashtalk",
            "AVATAR_WIDTH": str(tiny_ckpt["width"]),
            "AVATAR_HEIGHT": str(tiny_ckpt["height"]),
            "AVATAR_ENGINE_OPTIONS": json.dumps(options),
            "AGENT_AVATAR_JOIN_TIMEOUT": "60",
        },
    )
    try:
        stack.start_all()
        caller = ScriptedCaller(stack.url, caller_token(f"ft-{uuid.uuid4().hex[:6]}", "caller"))
        await caller.join()
        try:
            assert await caller.wait_video(timeout=90), "no FlashTalk video reached the caller"
            await caller.wait_greeting(timeout=60)
            turn = await caller.ask("Where is the nearest branch?", say("Where is the nearest branch?"),
                                    answer_timeout=60)
        finally:
            await caller.leave()
    finally:
        stack.stop()
    # the engine's frames (64x64, 28 per 1.12 s chunk) arrived along with the spoken answer
    assert caller.avatar_identity is not None
    assert len(caller.video) > 50
    assert turn.first_audio is not None and turn.answer_end is not None
    assert caller.fps(turn.first_audio, turn.answer_end) > 5
    assert "avatar flashtalk rendering for" in (tmp_path / "avatar.log").read_text()
