"""Run the whole stack on one machine: livekit-server (dev mode, loopback) and both workers.

Used by ``make demo`` and by the end-to-end tests. Every process is started as a
child and stopped (SIGTERM, then SIGKILL) on exit; logs go to files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.paths import cache_root

CACHE = cache_root()
LIVEKIT_VERSION = "v1.13.5"
REPO = Path(__file__).resolve().parent.parent
# The demo organisation's assistant, set up through the admin API by start_admin (persona + its knowledge).
DEMO_PERSONA = REPO / "dialogue" / "data" / "personas" / "bank.yaml"


def livekit_binary() -> Path:
    for cand in (os.environ.get("LIVEKIT_SERVER_BIN"), CACHE / "bin" / f"livekit-server-{LIVEKIT_VERSION}",
                 shutil.which("livekit-server")):
        if cand and Path(cand).is_file():
            return Path(cand)
    raise FileNotFoundError("livekit-server is not built; run `make livekit` (scripts/setup_livekit.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def wait_http(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers 200, failing early (with the log's tail) if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not answer on {url}:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def room_identities(url: str, room: str) -> list[str]:
    """Who is in ``room`` on the stack's livekit-server (``url``, its dev key), as the server lists them.
    Blocking: it runs its own event loop in a thread of its own, so it can be called from a thread that
    drives a browser or from inside a running loop's thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from livekit import api

    async def _list() -> list[str]:
        lk = api.LiveKitAPI(url.replace("ws://", "http://"), "devkey", "secret")
        try:
            res = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return [p.identity for p in res.participants]
        finally:
            await lk.aclose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _list()).result()


@dataclass
class Stack:
    """A running livekit-server plus agent and avatar workers."""

    log_dir: Path
    http_port: int = 7880
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    _rtc_ports: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        """Start a child process of the stack (stopped with it); its output goes to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        f = open(log, "w")  # noqa: SIM115 - owned by the child for its lifetime
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        proc = Proc(name, p, log)
        self.procs.append(proc)
        return proc

    def start_server(self, timeout: float = 20.0) -> None:
        if self._rtc_ports is None:
            self._rtc_ports = (free_port(), free_port())
        tcp, udp = self._rtc_ports
        # sync_streams as in compose.yaml: a room the server re-creates after a restart (the agent rejoining
        # first, without the caller's room configuration) still hands the caller the face's audio and video
        # as one stream
        body = (f"port: {self.http_port}\nroom:\n  sync_streams: true\nrtc:\n  tcp_port: {tcp}\n  udp_port: {udp}\n"
                "logging:\n  level: info\n")
        proc = self.spawn(
            "livekit-server",
            [str(livekit_binary()), "--dev", "--bind", "127.0.0.1", "--node-ip", "127.0.0.1", "--config-body", body],
            os.environ.copy(),
        )
        proc.wait_http(f"http://127.0.0.1:{self.http_port}/", timeout)

    def restart_server(self, down_for: float = 0.0, timeout: float = 20.0) -> None:
        """Kill livekit-server (SIGKILL: a crash, no drain) and start it again on the same ports after
        ``down_for`` seconds: every room it held is gone."""
        old = next(p for p in self.procs if p.name == "livekit-server")
        old.popen.kill()
        old.popen.wait(10)
        self.procs.remove(old)
        time.sleep(down_for)
        old.log.rename(old.log.with_name(f"livekit-server.{int(time.time())}.log"))
        self.start_server(timeout)

    def start_admin(
        self,
        data_dir: Path,
        *,
        avatar_name: str = "Ava",
        enable_widget: bool = False,
        extra_env: dict[str, str] | None = None,
        persona: Path | None = DEMO_PERSONA,
        portrait: Path | None = None,
        timeout: float = 60.0,
    ) -> dict[str, str]:
        """Start the admin API (embedded SQLite under ``data_dir``), bootstrap a demo tenant and, through
        the API, give its avatar the ``persona`` file's persona and knowledge and, when given, the
        ``portrait`` (prepared by the admin; the avatar worker fetches the face) (:mod:`harness.provision`).

        Returns the bootstrap values (DH_ADMIN_URL, DH_ADMIN_API_KEY, DH_ADMIN_VIEWER_KEY,
        DH_AVATAR_ID, ...); the agent workers started afterwards record their calls there.
        ``enable_widget`` lets the public widget routes serve the bootstrapped avatar.
        """
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = os.environ.copy()
        env.update(
            ADMIN_DATA_DIR=str(data_dir), ADMIN_PUBLIC_URL=url, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
            # embedded: SQLite under data_dir, tasks run in the API process, tokens for this stack's server
            ADMIN_DATABASE_URL="", ADMIN_BROKER_URL="", ADMIN_CELERY_EAGER="true",
            ADMIN_LIVEKIT_URL=self.url, ADMIN_LIVEKIT_API_KEY="devkey", ADMIN_LIVEKIT_API_SECRET="secret",
            # the real ingestor (a test session may have set a plain one for the admin's unit tests)
            ADMIN_KNOWLEDGE_INGESTOR="admin.ingest:dialogue_ingestor",
        )
        env.update(extra_env or {})
        out = subprocess.run(
            [sys.executable, "-m", "admin", "bootstrap", "--admin-url", url, "--avatar-name", avatar_name],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"admin bootstrap failed:\n{out.stderr[-2000:]}")
        values = dict(
            line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines() if line.startswith("export ")
        )
        if enable_widget:
            env["ADMIN_WIDGET_AVATARS"] = values["DH_AVATAR_ID"]
        proc = self.spawn("admin", [sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1",
                                     "--port", str(port)], env)
        proc.wait_http(f"{url}/healthz", timeout)
        if persona is not None:
            # what an operator does in the console, through the API: persona, knowledge, avatar
            from .provision import provision

            values.update(provision(url, {"X-API-Key": values["DH_ADMIN_OPERATOR_KEY"]}, persona,
                                    avatar_id=values["DH_AVATAR_ID"], portrait=portrait))
        self.env.update({k: v for k, v in values.items() if k in ("DH_ADMIN_URL", "DH_ADMIN_API_KEY")})
        return values

    def worker_env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(
            LIVEKIT_URL=self.url, LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="secret",
            PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
            AGENT_HTTP_PORT=str(free_port()), AVATAR_HTTP_PORT=str(free_port()),
        )
        env.update(self.env)
        return env

    def start_worker(self, module: str, timeout: float = 180.0, *, name: str | None = None,
                     env: dict[str, str] | None = None) -> Proc:
        """Start ``python -m <module> start``; wait until it has registered and, for the agent,
        until its first job process has loaded the models (so the first call is not kept waiting).
        ``name`` (default: the module) names its log; ``env`` adds to its environment."""
        # the agent's first job thread has loaded the shared models once it says "job runner initialized"
        markers = ("registered worker", "job runner initialized") if module == "agent" else ("registered worker",)
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            proc = self.spawn(name or module, [sys.executable, "-m", module, "start", "--log-level", "INFO"],
                              {**self.worker_env(), **(env or {})})
            if not self._lost_its_port(proc, markers[0], deadline) or attempt == 2:
                break
            # free_port() only names a port that was free a moment ago: another process (a call's
            # connection, another stack) can take it before the worker binds it; pick new ones
            self.procs.remove(proc)
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{module} worker exited with {proc.popen.returncode}:\n{proc.tail()}")
            log = proc.log.read_text(errors="replace")
            if all(m in log for m in markers):
                return proc
            time.sleep(0.25)
        raise TimeoutError(f"{module} worker did not register within {timeout:.0f} s:\n{proc.tail()}")

    @staticmethod
    def _lost_its_port(proc: Proc, registered: str, deadline: float) -> bool:
        """Whether ``proc`` exited before logging ``registered`` because its HTTP port was taken (the
        worker binds it before it registers)."""
        while time.monotonic() < deadline and proc.popen.poll() is None:
            if registered in proc.log.read_text(errors="replace"):
                return False
            time.sleep(0.25)
        return proc.popen.poll() is not None and "address already in use" in proc.tail()

    def start_watch(self, targets: list[str], interval: float = 0.2) -> Proc:
        """The failover watcher (``python -m agent watch``) over the agent workers' /metrics URLs."""
        env = {**self.worker_env(), "AGENT_WATCH_TARGETS": ",".join(targets), "AGENT_WATCH_INTERVAL": str(interval)}
        proc = self.spawn("watch", [sys.executable, "-m", "agent", "watch"], env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"the watcher exited with {proc.popen.returncode}:\n{proc.tail()}")
            if proc.log.read_text(errors="replace").count("is up (") >= len(targets):
                return proc
            time.sleep(0.25)
        raise TimeoutError(f"the watcher did not see every worker up within 30 s:\n{proc.tail()}")

    def log_records(self, name: str) -> list[dict[str, Any]]:
        """The JSON records of one process's log (``agent``, ``avatar``), in order."""
        out = []
        for line in (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def start_all(self) -> Stack:
        self.start_server()
        self.start_worker("avatar")
        self.start_worker("agent")
        return self

    def start_with_admin(self, data_dir: Path, **admin: Any) -> dict[str, str]:
        """The admin (:meth:`start_admin`, with ``admin``'s options), then livekit-server and the avatar
        and agent workers, which record their calls there; returns the admin's bootstrap values."""
        values = self.start_admin(data_dir, **admin)
        self.start_all()
        return values

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self.start_all()

    def __exit__(self, *exc: object) -> None:
        self.stop()
