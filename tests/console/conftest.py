"""Fixtures of the console tests: the admin backend as a real server process on the test
database (PostgreSQL when DH_TEST_DATABASE_URL is set, as the other admin tests), tenants with
one user per role, and headless Chromium (Debian's package, driven by Playwright).

Screenshots of each page go to out/console/*.png."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from harness.devstack import REPO

CHROMIUM = os.environ.get("DH_CHROMIUM", "/usr/bin/chromium")
OUT = REPO / "out" / "console"
PG_URL = os.environ.get("DH_TEST_DATABASE_URL")
ENV_KEYS = ("ADMIN_DATABASE_URL", "ADMIN_DATA_DIR", "ADMIN_CELERY_EAGER", "ADMIN_KNOWLEDGE_INGESTOR")


@contextlib.contextmanager
def configure_admin_env(data_dir: Path, ingestor: str = "admin.ingest:plain_ingestor") -> Iterator[str]:
    """Point this process's admin settings at the test database (migrated), restore them after."""
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    db_url = PG_URL or f"sqlite:///{data_dir / 'admin.db'}"
    os.environ.update(ADMIN_DATABASE_URL=db_url, ADMIN_DATA_DIR=str(data_dir), ADMIN_CELERY_EAGER="true",
                      ADMIN_KNOWLEDGE_INGESTOR=ingestor)
    from admin.core.config import get_settings

    get_settings.cache_clear()
    from admin.migrate import upgrade
    from admin.worker import celery_app

    celery_app.conf.task_always_eager = True
    upgrade(db_url)
    try:
        yield db_url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def admin_server(data_dir: Path, db_url: str, **env_extra: str) -> Iterator[SimpleNamespace]:
    """``python -m admin serve`` on a free port; tasks run in the API process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ.copy()
    env.update(ADMIN_DATABASE_URL=db_url, ADMIN_DATA_DIR=str(data_dir), ADMIN_CELERY_EAGER="true",
               ADMIN_BROKER_URL="", ADMIN_PUBLIC_URL=url, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **env_extra)
    log = (data_dir / f"server-{port}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"admin server exited:\n{(data_dir / log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("admin server did not start in 60 s")
            time.sleep(0.3)
        yield SimpleNamespace(url=url, port=port, log=Path(log.name))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _need_chromium() -> None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make browser` (scripts/setup_browser.sh)")


@pytest.fixture(scope="module")
def console_db(tmp_path_factory):
    data = tmp_path_factory.mktemp("console-e2e")
    # the real ingestor (MiniLM embeddings when the model is installed, else plain chunks)
    with configure_admin_env(data, ingestor="admin.ingest:dialogue_ingestor") as db_url:
        yield SimpleNamespace(url=db_url, data=data)


@pytest.fixture(scope="module")
def server(console_db):
    with admin_server(console_db.data, console_db.url, ADMIN_KNOWLEDGE_INGESTOR="admin.ingest:dialogue_ingestor") as s:
        yield s


@pytest.fixture(scope="module")
def tenant(console_db):
    from tests.admin.conftest import make_tenant

    return make_tenant()


@pytest.fixture(scope="module")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                                     "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


class Console:
    """One browser context on the console, collecting console errors and page errors."""

    def __init__(self, browser, server, out_dir: Path) -> None:
        self.server, self.out_dir = server, out_dir
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.allowed: list[str] = []  # substrings of errors a test provokes on purpose
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.server.url}/console/{hash_}")

    def sign_in(self, email: str, password: str) -> None:
        self.open()
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_test_id("whoami").wait_for()

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { location.hash = h }", hash_)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.out_dir / f"{name}.png"), full_page=True)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def console(browser, server, out_dir):
    c = Console(browser, server, out_dir)
    yield c
    errors = c.unexpected_errors()
    c.close()
    assert not errors, f"errors in the browser console: {errors}"
