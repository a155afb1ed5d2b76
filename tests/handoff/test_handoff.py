"""A person really takes over the call, through the real livekit-server, agent, avatar and admin.

The caller asks for a person; the call shows up in the admin's live queue with its summary; an
operator accepts (the route's token), joins with a microphone of their own; while they are in the
room the agent does not answer the caller, the operator's voice reaches the caller, both are in
the record; the operator leaves and the agent answers again. And when nobody accepts in time, the
agent says so and makes a call-back ticket.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from harness.caller import ScriptedCaller
from harness.devstack import Stack, free_port

pytestmark = pytest.mark.e2e

API = "/api/v1"
EMAIL, PASSWORD = "operator.sam@harbor.example", "sam-operator-password"
TIMEOUT = 12.0  # AGENT_HANDOFF_TIMEOUT of this stack


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    from harness.provision import sign_in

    tmp = tmp_path_factory.mktemp("handoff")
    s = Stack(log_dir=tmp / "logs", http_port=free_port(),
              env={"AGENT_HANDOFF_TIMEOUT": str(TIMEOUT), "AGENT_MAX_CALLS": "3", "AVATAR_MAX_CALLS": "3"})
    s.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        values = s.start_with_admin(tmp / "admin", extra_env={"ADMIN_FIRST_ADMIN_EMAIL": EMAIL,
                                                              "ADMIN_FIRST_ADMIN_PASSWORD": PASSWORD})
        yield {"stack": s, "url": values["DH_ADMIN_URL"], "values": values,
               "operator": sign_in(values["DH_ADMIN_URL"], EMAIL, PASSWORD)}
    finally:
        s.stop()


def api(d, method: str, path: str, **kw):  # noqa: ANN201
    r = httpx.request(method, f"{d['url']}{API}{path}", headers=kw.pop("headers", d["operator"]), timeout=30, **kw)
    assert r.status_code < 400, r.text
    return r.json()


async def caller_in(d) -> tuple[ScriptedCaller, dict]:
    v = d["values"]
    tok = api(d, "POST", "/tokens/livekit", json={"avatar_id": v["DH_AVATAR_ID"]},
              headers={"X-API-Key": v["DH_ADMIN_API_KEY"]})
    caller = ScriptedCaller(d["stack"].url, tok["token"])
    await caller.join()
    assert await caller.wait_video(timeout=90), "the avatar's video never arrived"
    await caller.wait_greeting(timeout=60)
    await caller.wait_quiet(quiet_for=1.5)
    return caller, tok


async def queued(d, room: str, caller: ScriptedCaller, since: float, timeout: float = 30.0) -> tuple[dict, float]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for h in await asyncio.to_thread(api, d, "GET", "/handoffs"):
            if h["room"] == room:
                return h, time.time()
        await asyncio.sleep(0.1)
    agent = next(p for p in d["stack"].procs if p.name == "agent")
    log = "\n".join(line for line in agent.tail(400).splitlines() if room in line or "Traceback" in line)
    raise AssertionError(f"the call in {room} never reached the handoff queue; the agent said "
                         f"{caller.said_since(since)!r}; its log for the room:\n{log[-4000:]}")


async def ask_for_a_person(d, caller: ScriptedCaller, room: str, pcm: np.ndarray) -> tuple[dict, float, float]:
    """The caller asks for a person; a caller not understood asks again, as people do (under load a
    starved VAD can cut the sentence in two, and half of it is no request). Returns the queue entry,
    when it was seen, and the end of the request that got there."""
    _s, asked = await caller.speak(pcm)
    try:
        entry, seen = await queued(d, room, caller, asked, timeout=20.0)
    except AssertionError as first:
        print(f"not understood the first time: {first}")
        await caller.wait_quiet(quiet_for=1.5)
        _s, asked = await caller.speak(pcm)
        entry, seen = await queued(d, room, caller, asked)
    return entry, seen, asked


def loud(series: list[tuple[float, float]], t_from: float, t_to: float, threshold: float = 600.0) -> float | None:
    return next((t for t, r in series if t_from <= t <= t_to and r > threshold), None)


async def session_record(d, session_id: str, outcome: str, timeout: float = 20.0) -> dict:
    h = {"X-API-Key": d["values"]["DH_ADMIN_VIEWER_KEY"]}
    deadline = time.time() + timeout
    while True:
        got = await asyncio.to_thread(httpx.get, f"{d['url']}{API}/sessions/{session_id}", headers=h, timeout=30)
        if got.status_code == 200 and got.json().get("outcome") == outcome:
            return got.json()
        if time.time() > deadline:
            raise AssertionError(f"session {session_id}: {got.status_code} {got.text[:500]}")
        await asyncio.sleep(0.5)


async def test_an_operator_takes_the_call_and_hands_it_back(desk, say):
    d = desk
    caller, tok = await caller_in(d)
    operator = None
    try:
        entry, seen, asked = await ask_for_a_person(d, caller, tok["room"], say("I would like to speak to a person, please."))
        to_queue = seen - asked
        assert entry["status"] == "waiting" and entry["summary"], entry
        assert any(t["speaker"] == "user" for t in entry["transcript"]), entry["transcript"]
        await caller.wait_quiet(quiet_for=1.0)  # "I'm connecting you to a colleague"

        t_accept = time.time()
        taken = await asyncio.to_thread(api, d, "POST", f"/handoffs/{entry['id']}/accept")
        assert taken["room"] == tok["room"] and taken["identity"].startswith("operator-")
        again = httpx.post(f"{d['url']}{API}/handoffs/{entry['id']}/accept", headers=d["operator"], timeout=30)
        assert again.status_code == 409  # one colleague per call
        operator = ScriptedCaller(d["stack"].url, taken["token"])
        await operator.join()
        hello = say("Hello, this is Sam from Harbor Bank. I can help you with that.")
        o_start, o_end = await operator.speak(hello)
        heard = None
        deadline = time.time() + 10
        while heard is None and time.time() < deadline:
            heard = loud(caller.people.get(taken["identity"], ([], []))[0], o_start, time.time())
            await asyncio.sleep(0.05)
        assert heard is not None, "the caller never heard the colleague"
        accept_to_heard = heard - t_accept

        # the caller asks something while the colleague is there: the agent keeps quiet
        await asyncio.sleep(1.0)
        _q0, q_end = await caller.speak(say("What are your opening hours?"))
        await asyncio.sleep(4.0)
        assert loud(caller.audio_rms, q_end, time.time()) is None, "the agent answered while a colleague had the call"
        assert "monday" not in caller.said_since(q_end)

        # the colleague hands back (leaves); the agent says it is back and answers again
        t_back = time.time()
        await operator.leave()
        operator = None
        assert await caller.wait_loud(t_back, timeout=15) is not None, "the agent did not take the call back"
        await caller.wait_said(t_back, ("back",))  # "I'm back with you"
        t = time.time()
        turn = await caller.ask("What are your opening hours?", say("What are your opening hours?"),
                                wait_answer_end=False)
        heard = await caller.wait_said(t, ("monday",))
        assert turn.first_audio is not None and "monday" in heard, heard
    finally:
        if operator is not None:
            await operator.leave()
        await caller.leave()
    print(f"handoff: caller's request -> queue entry {to_queue:.2f} s; accept -> operator heard by the caller "
          f"{accept_to_heard:.2f} s")
    rec = await session_record(d, tok["session_id"], "escalated_handled")
    speakers = [t["speaker"] for t in rec["turns"]]
    human = " ".join(t["text"].lower() for t in rec["turns"] if t["speaker"] == "human_agent")
    assert "sam" in human or "harbor" in human, rec["turns"]
    system = " ".join(t["text"] for t in rec["turns"] if t["speaker"] == "system")
    assert "took over after" in system and "handed the call back" in system, system
    assert speakers.count("user") >= 3  # including the question asked while the colleague had the call
    done = [h for h in api(d, "GET", "/handoffs", params={"state": "all"}) if h["session_id"] == tok["session_id"]]
    assert done and done[0]["status"] == "returned" and done[0]["operator_joined_at"] and done[0]["accepted_by"]


async def test_nobody_accepts_in_time_the_agent_says_so_and_makes_a_ticket(desk, say):
    d = desk
    caller, tok = await caller_in(d)
    try:
        entry, _, asked = await ask_for_a_person(d, caller, tok["room"], say("Can I talk to a real person?"))
        # nobody accepts: after the timeout the agent tells the caller and makes a call-back ticket
        deadline = asked + TIMEOUT + 20
        while "ticket" not in caller.said_since(asked + TIMEOUT - 1) and time.time() < deadline:
            await asyncio.sleep(0.2)
        assert "ticket" in caller.said_since(asked + TIMEOUT - 1), caller.said_since(asked)
        await caller.wait_said(asked + TIMEOUT - 1, ("ticket",))
        late = httpx.post(f"{d['url']}{API}/handoffs/{entry['id']}/accept", headers=d["operator"], timeout=30)
        assert late.status_code == 409  # the caller no longer waits
        t = time.time()
        turn = await caller.ask("What are your opening hours?", say("What are your opening hours?"),
                                wait_answer_end=False)
        heard = await caller.wait_said(t, ("monday",))
        assert turn.first_audio is not None and "monday" in heard, heard  # and it goes on helping
    finally:
        await caller.leave()
    rec = await session_record(d, tok["session_id"], "escalated_unanswered")
    assert any("call-back ticket" in t["text"] for t in rec["turns"] if t["speaker"] == "system"), rec["turns"]
    assert np.isfinite(entry["waiting_seconds"])
