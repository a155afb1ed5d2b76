"""The agent's durable recorder: retries while the backend is down, delivers each turn exactly once.

The restart test runs a REAL backend (uvicorn subprocess) against PostgreSQL and kills it mid-call.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from agent.paths import cache_root
from agent.recorder import SessionRecorder

from .conftest import PG_URL, make_tenant, requires_pg

ROOT = Path(__file__).resolve().parents[2]


def _grant(t) -> dict:
    """A new session id with the grant its call's token would carry (as the agent gets them)."""
    import uuid

    from admin.core.security import mint_session_grant

    sid = str(uuid.uuid4())
    return {"session_id": sid, "grant": mint_session_grant(t.id, sid, 3600)}


class FlakyBackend:
    """An httpx transport that fails, or loses the response after applying, on chosen calls."""

    def __init__(self, fail_first: int = 0, lose_response_on: set[int] | None = None) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.lose = lose_response_on or set()
        self.applied: dict[str, dict] = {}  # event_id -> event, what a deduplicating API keeps
        self.deliveries = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise httpx.ConnectError("backend down")
        events = json.loads(request.content)["events"]
        self.deliveries += len(events)
        for e in events:
            self.applied.setdefault(e["event_id"], e)
        if self.calls in self.lose:
            raise httpx.ReadTimeout("response lost")
        return httpx.Response(200, json={"applied": len(events), "duplicates": 0})


async def test_retries_until_backend_answers_and_redelivers_lost_responses(tmp_path):
    backend = FlakyBackend(fail_first=3, lose_response_on={4})
    rec = SessionRecorder("http://admin", "dhk_x", tmp_path, transport=httpx.MockTransport(backend), max_backoff=0.2)
    sid = rec.start_session(room="r1")
    for i in range(5):
        rec.add_turn(sid, "user" if i % 2 == 0 else "assistant", f"turn {i}", latency={"e2e_latency": 0.5})
    rec.end_session(sid)
    assert await rec.aclose(timeout=10)
    turns = [e for e in backend.applied.values() if e["type"] == "turn"]
    assert sorted(t["payload"]["seq"] for t in turns) == [0, 1, 2, 3, 4]
    assert backend.deliveries > len(backend.applied)  # the lost response made it redeliver (deduplicated by id)


async def test_events_survive_a_restart_of_the_agent(tmp_path):
    down = FlakyBackend(fail_first=10**6)
    rec = SessionRecorder("http://admin", "k", tmp_path, transport=httpx.MockTransport(down), max_backoff=0.05)
    sid = rec.start_session()
    rec.add_turn(sid, "user", "hello")
    assert not await rec.aclose(timeout=0.3)  # backend down: stays in the spool
    up = FlakyBackend()
    rec2 = SessionRecorder("http://admin", "k", tmp_path, transport=httpx.MockTransport(up))
    assert await rec2.aclose(timeout=5)
    assert {e["type"] for e in up.applied.values()} == {"session_start", "turn"}


async def test_recording_does_not_block_the_event_loop(tmp_path):
    rec = SessionRecorder("http://127.0.0.1:9", "k", tmp_path, request_timeout=0.2)  # nothing listens there
    t0 = time.perf_counter()
    sid = rec.start_session()
    for i in range(200):
        rec.add_turn(sid, "user", f"t{i}")
    assert time.perf_counter() - t0 < 0.2
    await rec.aclose(timeout=0.2)


# The recorder on a real, full filesystem: a 1 MB tmpfs in a mount namespace of its own (root, as
# in CI), filled up by the child itself before the call's turns arrive.
FULL_DISK_CHILD = r"""
import errno, json, logging, os, sys, time
from pathlib import Path

import httpx
from agent.recorder import SessionRecorder

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
spool = Path(sys.argv[1])
applied, calls, down = {}, [0], [False]

def backend(request):
    calls[0] += 1
    if calls[0] <= 5 or down[0]:  # the admin is down too while the disk is full
        raise httpx.ConnectError("backend down")
    for e in json.loads(request.content)["events"]:
        applied[e["event_id"]] = applied.get(e["event_id"], 0) + 1
    return httpx.Response(200, json={})

def recorder():
    return SessionRecorder("http://admin", "k", spool, transport=httpx.MockTransport(backend), max_backoff=0.2)

rec = recorder()
sid = rec.start_session(room="full-disk")
fd = os.open(spool / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, bytes(4096))
except OSError as exc:
    assert exc.errno == errno.ENOSPC, exc
os.close(fd)
for i in range(300):
    rec.add_turn(sid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "x" * 400)
deadline = time.monotonic() + 30
while rec.pending and time.monotonic() < deadline:
    time.sleep(0.05)
while_full = {"pending": rec.pending, "thread_alive": rec._thread.is_alive()}
# room again, the admin down: the next turns are on disk when the agent stops, and the next recorder sends them
os.unlink(spool / "filler")
down[0] = True
for i in range(300, 310):
    rec.add_turn(sid, "user", f"turn {i}")
left_on_disk = not rec.close(timeout=1.0)
down[0] = False
ok = recorder().close(timeout=10)
print(json.dumps({"while_full": while_full, "left_on_disk": left_on_disk, "closed_clean": ok,
                  "applied": len(applied), "max_copies": max(applied.values())}))
"""


def test_a_full_spool_disk_loses_no_turn(tmp_path):
    """The spool's disk is full and the admin is down: the turns wait in memory, reach the admin once it
    answers, exactly once each, and the recorder spools again once the disk has room."""
    import shutil

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.fail("this test needs root and util-linux's unshare (a tmpfs in a private mount namespace)")
    spool = tmp_path / "spool"
    spool.mkdir()
    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    run = subprocess.run(
        ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1"', "sh",
         str(spool), sys.executable, str(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["while_full"] == {"pending": 0, "thread_alive": True}, (out, run.stderr[-3000:])
    assert out["left_on_disk"] and out["closed_clean"], out
    assert out["applied"] == 1 + 310 and out["max_copies"] == 1, out
    assert "cannot take events" in run.stderr, run.stderr[-3000:]


# --- against a real backend process ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """``python -m admin serve`` in a subprocess."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port, self.data_dir, self.proc = port, data_dir, None

    def start(self) -> None:
        env = {**os.environ, "ADMIN_DATABASE_URL": PG_URL, "ADMIN_DATA_DIR": str(self.data_dir),
               "ADMIN_CELERY_EAGER": "true"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "admin", "serve", "--no-migrate", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("backend did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@requires_pg
async def test_backend_restart_mid_call_loses_no_turn_and_duplicates_none(tmp_path):
    from admin.core.db import session_scope
    from admin.models import CallSession, Turn

    t = make_tenant()
    backend = Backend(_free_port(), tmp_path / "data")
    backend.start()
    rec = SessionRecorder(f"http://127.0.0.1:{backend.port}", t.headers["agent"]["X-API-Key"], tmp_path / "spool",
                          max_backoff=0.3, request_timeout=2)
    try:
        sid = rec.start_session(room="restart-test", **_grant(t))
        for i in range(10):
            rec.add_turn(sid, "user" if i % 2 == 0 else "assistant", f"before {i}", latency={"e2e_latency": 0.8})
        assert await rec.aflush(timeout=15)
        backend.kill()  # the backend dies mid-call
        for i in range(10, 25):
            rec.add_turn(sid, "user" if i % 2 == 0 else "assistant", f"during {i}", latency={"e2e_latency": 0.9})
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert rec.pending > 0  # they are waiting in the spool
        backend.start()
        for i in range(25, 30):
            rec.add_turn(sid, "assistant", f"after {i}")
        rec.end_session(sid, outcome="completed")
        assert await rec.aclose(timeout=30)
    finally:
        backend.kill()
    with session_scope() as db:
        seqs = list(db.scalars(select(Turn.seq).where(Turn.session_id == sid).order_by(Turn.seq)))
        assert seqs == list(range(30))  # every turn, exactly once, in order
        s = db.get(CallSession, sid)
        assert s.tenant_id == t.id and s.outcome == "completed" and s.ended_at is not None
        assert db.scalar(select(func.count()).select_from(Turn).where(Turn.session_id == sid)) == 30


PG_CLUSTER = cache_root() / "pg" / "PG_VERSION"


@requires_pg
@pytest.mark.skipif(not PG_CLUSTER.exists(), reason="needs the PostgreSQL of scripts/services.sh to restart it")
async def test_database_restart_mid_call_loses_no_turn(tmp_path):
    from admin.core.db import session_scope
    from admin.models import Turn

    t = make_tenant()
    backend = Backend(_free_port(), tmp_path / "data")
    backend.start()
    rec = SessionRecorder(f"http://127.0.0.1:{backend.port}", t.headers["agent"]["X-API-Key"], tmp_path / "spool",
                          max_backoff=0.3, request_timeout=2)
    services = str(ROOT / "scripts" / "services.sh")
    try:
        sid = rec.start_session(room="db-restart", **_grant(t))
        for i in range(5):
            rec.add_turn(sid, "user", f"before {i}")
        assert await rec.aflush(timeout=15)
        subprocess.run([services, "pg-stop"], check=True, capture_output=True)
        try:
            for i in range(5, 12):
                rec.add_turn(sid, "assistant", f"while the database is down {i}")
            await asyncio.sleep(1.0)
            assert rec.pending > 0
        finally:
            subprocess.run([services, "start"], check=True, capture_output=True)
        rec.end_session(sid)
        assert await rec.aclose(timeout=30)
    finally:
        backend.kill()
    with session_scope() as db:
        assert list(db.scalars(select(Turn.seq).where(Turn.session_id == sid).order_by(Turn.seq))) == list(range(12))
