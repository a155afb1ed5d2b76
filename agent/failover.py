"""A call outlives the agent worker that carried it: a watcher re-dispatches it to a standby.

Self-hosted livekit-server does not re-dispatch the jobs of an agent worker that died (the
dispatch stays "active", livekit/agents#1472), and it keeps the dead agent in the room for about
20 s (measured: SIGKILL -> participant_disconnected 20.3 s): the caller would hear nothing and
then be alone. So:

* every agent worker with a metrics port publishes one ``dh_agent_call{room, job, agent_name}``
  series per call in progress (:func:`announce_call`);
* ``python -m agent watch`` reads the ``/metrics`` of each worker (``AGENT_WATCH_TARGETS``) every
  ``AGENT_WATCH_INTERVAL`` seconds. A worker that refuses the connection (its process is gone) or
  has not answered for 10 s (hung) is down: for each of its calls the watcher removes the dead agent from
  the room (its face leaves with it), and dispatches the room's call again -- same metadata, so
  the same call ticket and the same session record, plus ``resume`` -- to the agent name of a
  worker that is up (a standby, registered under its own name so callers are never sent to it);
* the new job (:func:`resume_of` in the entrypoint) restores the conversation from the session's
  record, numbers its turns after the old ones, tells the caller the line was cut and answers
  the question that was left unanswered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from . import metrics as call_metrics

logger = logging.getLogger("agent.failover")

RESUME_KEY = "resume"  # dispatch metadata: how many times this call was resumed
SEQ_STRIDE = 100_000  # the turns of the n-th resumption are numbered from n * SEQ_STRIDE


def announce_call(ctx: Any, agent_name: str) -> None:
    """Publish this call on the worker's /metrics until its job ends (call in the entrypoint)."""
    labels = {"room": ctx.room.name, "job": ctx.job.id, "agent_name": agent_name}
    call_metrics.CALL.labels(**labels).set(1)

    async def _gone(_reason: str = "") -> None:
        try:
            call_metrics.CALL.remove(*labels.values())
        except KeyError:
            pass

    ctx.add_shutdown_callback(_gone)


def resume_of(meta: dict[str, Any]) -> int:
    """How many times the call of this dispatch metadata was resumed (0: a new call)."""
    try:
        return max(0, int(meta.get(RESUME_KEY) or 0))
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- the watcher
@dataclass
class Call:
    room: str
    job: str
    agent_name: str


@dataclass
class Target:
    """One watched agent worker: its /metrics URL, what it last said, and whether it is up."""

    url: str
    up: bool = False
    agent_name: str = ""
    calls: list[Call] = field(default_factory=list)
    silent_since: float | None = None  # monotonic time of the first read it did not answer


def parse_metrics(text: str) -> tuple[str, list[Call]]:
    """(the worker's dispatch name, its calls in progress) from its /metrics page."""
    name, calls = "", []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == "dh_agent_worker" and sample.value >= 1:
                name = sample.labels["agent_name"]
            elif family.name == "dh_agent_call" and sample.value >= 1:
                calls.append(Call(sample.labels["room"], sample.labels["job"], sample.labels["agent_name"]))
    return name, calls


class Watcher:
    """Reads the agent workers' call lists; re-dispatches the calls of a worker that went down."""

    def __init__(self, targets: list[str], *, livekit_url: str, api_key: str, api_secret: str,
                 interval: float = 0.2, hang_after: float = 10.0) -> None:
        self.targets = [Target(u.rstrip("/")) for u in targets]
        self.interval = interval
        self.hang_after = hang_after
        self._lk = (livekit_url, api_key, api_secret)

    async def _read(self, client: httpx.AsyncClient, t: Target) -> str:
        """``ok``; ``gone`` (nothing listens on its port: the process is dead); ``slow`` (no answer in time)."""
        try:
            # only the two series this needs (the full page is tens of kB to parse 4-10 times a second)
            r = await client.get(f"{t.url}/metrics", params=[("name[]", "dh_agent_call"), ("name[]", "dh_agent_worker")],
                                 timeout=self.hang_after / 4)
            r.raise_for_status()
        except httpx.ConnectError:
            return "gone"
        except httpx.HTTPError:
            return "slow"
        name, t.calls = parse_metrics(r.text)
        t.agent_name = name or next((c.agent_name for c in t.calls), t.agent_name)
        return "ok"

    async def step(self, client: httpx.AsyncClient) -> list[Target]:
        """One round over the targets; returns those that went down in it.

        A worker whose port refuses the connection is down at once. One that answers late is only
        busy (a call starting up, measured: reads missed 0.5 s timeouts then) until it has not
        answered for ``hang_after`` seconds: a call is never dispatched twice to live workers."""
        went_down = []
        now = time.monotonic()
        for t in self.targets:
            state = await self._read(client, t)
            if state == "ok":
                t.silent_since = None
                if not t.up:
                    logger.info("agent worker %s is up (%s, %d calls)", t.url, t.agent_name or "no name yet", len(t.calls))
                    t.up = True
                continue
            if t.silent_since is None:
                t.silent_since = now
            if t.up and (state == "gone" or now - t.silent_since >= self.hang_after):
                logger.warning("agent worker %s is down (%s)", t.url,
                               "its port refuses connections" if state == "gone" else f"no answer for {now - t.silent_since:.1f} s")
                t.up = False
                went_down.append(t)
        return went_down

    async def run(self, stop: asyncio.Event | None = None) -> None:
        from livekit import api

        stop = stop or asyncio.Event()
        url, key, secret = self._lk
        async with httpx.AsyncClient() as client, api.LiveKitAPI(url, key, secret) as lk:
            logger.info("watching %d agent worker(s) every %.2f s: %s", len(self.targets), self.interval,
                        ", ".join(t.url for t in self.targets))
            while not stop.is_set():
                t0 = time.monotonic()
                for dead in await self.step(client):
                    await self.fail_over(lk, dead)
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, self.interval - (time.monotonic() - t0)))
                except TimeoutError:
                    pass

    def _standby_for(self, dead: Target) -> str | None:
        live = [t for t in self.targets if t.up and t is not dead and t.agent_name]
        # a worker under another name (the standby) first: callers' own dispatches never go there
        live.sort(key=lambda t: (t.agent_name == dead.agent_name, len(t.calls)))
        return live[0].agent_name if live else None

    async def fail_over(self, lk: Any, dead: Target) -> None:
        from livekit import api

        if not dead.calls:
            logger.warning("agent worker %s is down; it had no call", dead.url)
            return
        name = self._standby_for(dead)
        for call in dead.calls:
            t0 = time.monotonic()
            try:
                await lk.room.remove_participant(api.RoomParticipantIdentity(room=call.room, identity=f"agent-{call.job}"))
            except Exception as e:  # the room may be gone (the caller left) or the agent already out
                logger.info("room %s: the dead agent could not be removed (%s)", call.room, e)
            if name is None:
                logger.error("agent worker %s is down with a call in room %s and no other worker is up: the "
                             "call cannot be resumed", dead.url, call.room)
                continue
            try:
                old = [d for d in await lk.agent_dispatch.list_dispatch(room_name=call.room)
                       if d.agent_name == call.agent_name]
                meta = json.loads(old[0].metadata or "{}") if old else {}
                meta[RESUME_KEY] = resume_of(meta) + 1
                for d in old:  # the dead worker's dispatch stays "active" otherwise
                    await lk.agent_dispatch.delete_dispatch(d.id, call.room)
                new = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
                    agent_name=name, room=call.room, metadata=json.dumps(meta)))
            except Exception:
                logger.exception("room %s: the call could not be dispatched again", call.room)
                continue
            done = {"room": call.room, "dead_job": call.job, "to": name, "dispatch": new.id,
                    "resume": meta[RESUME_KEY], "seconds": round(time.monotonic() - t0, 3)}
            logger.warning("agent worker %s is down: the call in room %s goes to %s (resumption %d, %.3f s)",
                           dead.url, call.room, name, meta[RESUME_KEY], done["seconds"], extra=done)
        dead.calls = []


def main() -> None:
    import os

    from .production import exit_if_insecure
    from .settings import AgentSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per read, 5 times a second
    exit_if_insecure("the failover watcher", admin_key_names=())
    s = AgentSettings()
    targets = [t.strip() for t in s.watch_targets.split(",") if t.strip()]
    if not targets:
        raise SystemExit("AGENT_WATCH_TARGETS is empty: give the /metrics URLs of the agent workers to watch "
                         "(each worker needs AGENT_METRICS_PORT)")
    url = os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880")
    key, secret = os.environ.get("LIVEKIT_API_KEY", ""), os.environ.get("LIVEKIT_API_SECRET", "")
    if not (key and secret):
        raise SystemExit("LIVEKIT_API_KEY and LIVEKIT_API_SECRET are needed to dispatch calls again")
    asyncio.run(Watcher(targets, livekit_url=url, api_key=key, api_secret=secret, interval=s.watch_interval).run())
