"""Fixtures of the security tests: those of tests/admin (one migrated database, fresh tenants), a real
uvicorn server in a thread (configured like ``python -m admin serve``), a live ``python -m admin serve``
subprocess (:class:`LiveServer`), and helpers.

The database is PostgreSQL when ``DH_TEST_DATABASE_URL`` is set, else SQLite (see tests/admin/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import (  # noqa: F401  (fixtures)
    PG_URL,
    TenantCtx,
    _configure,
    app,
    client,
    data_dir,
    db_url,
    make_tenant,
    other_tenant,
    png_bytes,
    tenant,
)

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m admin serve`` (uvicorn, embedded task mode) on loopback against the test database."""

    def __init__(self, db_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ADMIN_DATABASE_URL": db_url, "ADMIN_DATA_DIR": str(data_dir),
                    "ADMIN_CELERY_EAGER": "true", "ADMIN_KNOWLEDGE_INGESTOR": "admin.ingest:plain_ingestor", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "admin", "serve", "--no-migrate", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the admin server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def live_server(db_url, data_dir, _configure):  # noqa: F811
    """A real uvicorn server for this module."""
    server = LiveServer(db_url, data_dir).start()
    yield server
    server.stop()


@contextmanager
def serve(app) -> Iterator[str]:  # noqa: ANN001
    """Run ``app`` under uvicorn with the options ``python -m admin serve`` uses; yields its URL."""
    import uvicorn

    from admin.cli import uvicorn_options

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def jwt_claims(token: str) -> dict:
    """The claims of a LiveKit token (what anyone holding it can read)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def dispatch_metadata(token: str) -> dict:
    """The agent dispatch metadata inside a LiveKit token."""
    return json.loads(jwt_claims(token)["roomConfig"]["agents"][0]["metadata"])


def resolved(client, t: TenantCtx, token: str, role: str = "agent") -> dict:  # noqa: ANN001
    """What the agent gets for a token's call ticket with ``t``'s key (``GET /agent/calls/{ticket}``):
    session id, grant, persona, knowledge and avatar; ``avatar_id`` added for the tests' convenience."""
    ticket = dispatch_metadata(token)["ticket"]
    r = client.get(f"{API}/agent/calls/{ticket}", headers=t.headers[role])
    assert r.status_code == 200, r.text
    body = r.json()
    return {**body, "avatar_id": (body.get("avatar") or {}).get("id")}


def make_avatar(client, t: TenantCtx, name: str = "Ana") -> dict:  # noqa: ANN001
    r = client.post(f"{API}/avatars", json={"name": name, "engine": "simple"}, headers=t.headers["operator"])
    assert r.status_code == 201, r.text
    return r.json()


def call_token(client, t: TenantCtx, avatar_id: str, role: str = "operator", **body) -> dict:  # noqa: ANN001
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": avatar_id, **body}, headers=t.headers[role])
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def settings_override(monkeypatch):
    """Change admin settings for one test (restored after)."""
    from admin.core.config import get_settings

    def set_(**values):  # noqa: ANN003
        for k, v in values.items():
            monkeypatch.setattr(get_settings(), k, v)

    return set_
