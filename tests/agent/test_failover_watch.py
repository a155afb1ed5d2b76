"""The failover watcher's reading of agent workers (agent/failover.py), against real HTTP servers:
a worker whose port refuses connections is down at once; one that answers late is busy, not down,
until it has been silent for ``hang_after`` (a call must never be dispatched to two live workers)."""

from __future__ import annotations

import asyncio
import socket

import httpx
from aiohttp import web

from agent.failover import Watcher, parse_metrics

PAGE = """# HELP dh_agent_worker The dispatch name this agent worker registered under
# TYPE dh_agent_worker gauge
dh_agent_worker{agent_name="dh-agent"} 1.0
# HELP dh_agent_call A call in progress in this agent worker
# TYPE dh_agent_call gauge
dh_agent_call{agent_name="dh-agent",job="AJ_1",room="room-a"} 1.0
dh_agent_call{agent_name="dh-agent",job="AJ_2",room="room-b"} 1.0
"""


def test_parse_metrics_reads_the_worker_name_and_its_calls():
    name, calls = parse_metrics(PAGE)
    assert name == "dh-agent"
    assert [(c.room, c.job) for c in calls] == [("room-a", "AJ_1"), ("room-b", "AJ_2")]
    assert parse_metrics("") == ("", [])


def test_the_real_metrics_endpoint_is_what_the_watcher_parses():
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    Gauge("dh_agent_worker", "w", ["agent_name"], registry=reg).labels(agent_name="standby").set(1)
    Gauge("dh_agent_call", "c", ["room", "job", "agent_name"], registry=reg).labels(
        room="r", job="AJ_9", agent_name="standby").set(1)
    name, calls = parse_metrics(generate_latest(reg).decode())
    assert name == "standby" and [(c.room, c.job, c.agent_name) for c in calls] == [("r", "AJ_9", "standby")]


async def _serve(delay: dict[str, float]) -> tuple[web.AppRunner, int]:
    async def metrics(_request: web.Request) -> web.Response:
        await asyncio.sleep(delay["s"])
        return web.Response(text=PAGE)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_slow_worker_is_busy_and_a_closed_port_is_down_at_once():
    delay = {"s": 0.0}
    runner, port = await _serve(delay)
    w = Watcher([f"http://127.0.0.1:{port}"], livekit_url="", api_key="", api_secret="", interval=0.05, hang_after=0.8)
    async with httpx.AsyncClient() as client:
        assert await w.step(client) == []
        t = w.targets[0]
        assert t.up and t.agent_name == "dh-agent" and len(t.calls) == 2

        delay["s"] = 0.5  # answers after the read's timeout (hang_after / 4): busy, not dead
        for _ in range(2):
            assert await w.step(client) == []
        assert t.up and len(t.calls) == 2  # still the calls it last reported

        delay["s"] = 0.0
        assert await w.step(client) == [] and t.silent_since is None

        await runner.cleanup()  # the process is gone: nothing listens on its port any more
        down = await w.step(client)
        assert down == [t] and not t.up
        assert await w.step(client) == []  # reported once


async def test_a_worker_silent_for_hang_after_is_down():
    delay = {"s": 0.0}
    runner, port = await _serve(delay)
    w = Watcher([f"http://127.0.0.1:{port}"], livekit_url="", api_key="", api_secret="", interval=0.05, hang_after=0.4)
    try:
        async with httpx.AsyncClient() as client:
            assert await w.step(client) == []
            delay["s"] = 1.5  # hung
            down: list = []
            for _ in range(10):
                down = await w.step(client)
                if down:
                    break
            assert down == w.targets, "a worker silent past hang_after was not reported down"
    finally:
        delay["s"] = 0.0
        await runner.cleanup()


def test_a_resumed_conversation_answers_its_last_unanswered_question_again():
    from agent.failover import resume_of
    from agent.worker import resumed_conversation

    turns = [{"speaker": "assistant", "text": "Hello."}, {"speaker": "user", "text": "opening hours?"},
             {"speaker": "assistant", "text": "Monday to Friday."}, {"speaker": "user", "text": "where is the branch?"}]
    ctx, unanswered = resumed_conversation(turns)
    assert unanswered == "where is the branch?"
    assert [(m.role, m.text_content) for m in ctx.messages()] == [
        ("assistant", "Hello."), ("user", "opening hours?"), ("assistant", "Monday to Friday.")]
    ctx, unanswered = resumed_conversation(turns[:3])
    assert unanswered is None and len(ctx.messages()) == 3
    assert resume_of({}) == 0 and resume_of({"resume": 2}) == 2 and resume_of({"resume": "x"}) == 0
