"""The agent worker killed mid-answer, through the real livekit-server: a standby takes the call.

livekit-server alone would keep the dead agent in the room for ~20 s and never dispatch the call
again (agent/failover.py). With the watcher and a standby worker the caller hears "we were cut
off", then the answer that was cut, from a new face; the session stays one record, in order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from harness.caller import ScriptedCaller, _first_loud
from harness.devstack import Stack, free_port
from tests.reliability.calls import first_answer, session_record

pytestmark = pytest.mark.e2e


async def test_an_agent_worker_killed_mid_answer_hands_the_call_to_a_standby(tmp_path, say):
    import httpx

    from harness.provision import admin_call

    stack = Stack(log_dir=tmp_path / "logs", http_port=free_port())
    values = stack.start_admin(tmp_path / "admin")
    stack.start_server()
    stack.start_worker("avatar")
    m1, m2 = free_port(), free_port()
    primary = stack.start_worker("agent", env={"AGENT_METRICS_PORT": str(m1)})
    stack.start_worker("agent", name="agent-standby",
                       env={"AGENT_METRICS_PORT": str(m2), "AGENT_AGENT_NAME": "dh-agent-standby"})
    stack.start_watch([f"http://127.0.0.1:{m1}", f"http://127.0.0.1:{m2}"])
    admin = values["DH_ADMIN_URL"]
    tok = admin_call(values)
    caller = ScriptedCaller(stack.url, tok["token"])
    try:
        await first_answer(caller, say)

        first_face = caller.avatar_identity
        t = time.time()
        turn = await caller.ask("Where is the nearest branch?", say("Where is the nearest branch?"), wait_answer_end=False)
        assert turn.first_audio is not None, "no answer before the kill"
        await asyncio.sleep(0.5)  # mid-answer
        t_kill = time.time()
        os.killpg(primary.popen.pid, signal.SIGKILL)

        deadline = time.time() + 30
        back = new_face = None
        while time.time() < deadline:
            face = caller.avatar_identity
            if face != first_face and new_face is None:
                new_face = time.time()  # its video track is subscribed (polled every 50 ms)
            if face != first_face and face in caller._tracks:
                back = _first_loud(caller._tracks[face][0], caller.loud_threshold, t_kill)
                if back is not None:
                    break
            await asyncio.sleep(0.05)
        assert back is not None, "no new face spoke after the agent worker was killed:\n" + stack.procs[-1].tail()
        said = await caller.wait_said(t_kill, ("station",))
        assert "cut off" in said, said
        assert "station" in said.split("cut off", 1)[1], said  # the cut answer, given again

        await caller.wait_quiet(quiet_for=1.2)
        t = time.time()
        await caller.ask("What are your opening hours?", say("What are your opening hours?"), wait_answer_end=False)
        assert "monday" in await caller.wait_said(t, ("monday",)), "the call did not go on after the failover"
        print(f"agent worker killed mid-answer: a new face's video {new_face - t_kill:.2f} s and its voice "
              f"{back - t_kill:.2f} s after the kill")
    finally:
        await caller.leave()
    try:
        viewer = {"X-API-Key": values["DH_ADMIN_VIEWER_KEY"]}
        same_room = httpx.get(f"{admin}/api/v1/sessions", params={"room": tok["room"]}, headers=viewer, timeout=30).json()
        assert same_room["total"] == 1, same_room
        rec = await session_record(values, tok["session_id"])
        turns = [(x["speaker"], x["text"].lower()) for x in rec["turns"]]
        users = [text for who, text in turns if who == "user"]
        assert sum("branch" in u for u in users) == 1, turns  # the replayed question is not recorded twice

        def first(cond, after: int | None = -1) -> int | None:  # the first such turn after turn ``after``
            if after is None:
                return None
            return next((i for i, (who, text) in enumerate(turns) if i > after and cond(who, text)), None)

        asked = first(lambda w, x: w == "user" and "opening" in x)
        cut = first(lambda w, x: w == "user" and "branch" in x, asked)
        sorry = first(lambda w, x: w == "assistant" and "cut off" in x, cut)
        again = first(lambda w, x: w == "assistant" and "station" in x, sorry)
        then = first(lambda w, x: w == "user" and "opening" in x, again)
        assert None not in (asked, cut, sorry, again, then), turns  # in this order, in one record
        assert rec.get("outcome"), rec
    finally:
        stack.stop()
    watch = (tmp_path / "logs" / "watch.log").read_text()
    assert "goes to dh-agent-standby (resumption 1" in watch, watch
