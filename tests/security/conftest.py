"""Fixtures for the security tests: the admin fixtures (database, app, tenants) and a live server.

The database is PostgreSQL when ``DH_TEST_DATABASE_URL`` is set, else SQLite (see tests/admin/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import (  # noqa: F401  (fixtures)
    PG_URL,
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
