"""Fixtures for the browser tests: the stack, the admin server, headless Chromium with fake media."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.devstack import REPO, Proc, Stack, free_port

CHROMIUM = os.environ.get("DH_CHROMIUM", "/usr/bin/chromium")
OUT = REPO / "out" / "widget"
QUESTION = "What are your opening hours?"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


def _need_chromium() -> None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make browser` (scripts/setup_browser.sh)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -e '.[widget]'")


@pytest.fixture(scope="session")
def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


class AdminServer:
    def __init__(self, data_dir: Path, stack: Stack) -> None:
        self.stack = stack
        livekit_url = stack.url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ADMIN_DATA_DIR": str(data_dir),
            "ADMIN_DATABASE_URL": "", "ADMIN_BROKER_URL": "",
            "ADMIN_CELERY_EAGER": "true",
            "ADMIN_LIVEKIT_URL": livekit_url,
            "ADMIN_LIVEKIT_API_KEY": "devkey", "ADMIN_LIVEKIT_API_SECRET": "secret",
            "ADMIN_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "ADMIN_WIDGET_RATE_LIMIT": "30/60",
        }
        self.proc: Proc | None = None

    def bootstrap(self) -> str:
        out = subprocess.run([sys.executable, "-m", "admin", "bootstrap", "--avatar-name", "Ava"], env=self.env,
                             cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
        exports = dict(part.split("=", 1) for part in out.replace("export ", " ").split() if "=" in part)
        return exports["DH_AVATAR_ID"].strip("'\"")

    def start(self, widget_avatars: str) -> None:
        self.env["ADMIN_WIDGET_AVATARS"] = widget_avatars
        self.proc = self.stack.spawn(
            "admin", [sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1", "--port", str(self.port)], self.env
        )
        self.proc.wait_http(f"{self.url}/healthz", 60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture(scope="module")
def admin(stack, tmp_path_factory):
    server = AdminServer(tmp_path_factory.mktemp("admin"), stack)
    avatar_id = server.bootstrap()
    server.start(widget_avatars=avatar_id)
    server.avatar_id = avatar_id
    yield server
    server.stop()


@pytest.fixture(scope="session")
def question_wav(agent_settings, tmp_path_factory) -> Path:
    """The caller's question as the fake microphone: silence, the question, a long silence.

    Chromium loops the file, so the silence after the question leaves the agent time to answer.
    """
    from agent.caller import synthesize

    pcm = synthesize(QUESTION, agent_settings.model_path(agent_settings.piper_voice))
    rate = 16000
    audio = np.concatenate([np.zeros(int(3.5 * rate), np.int16), pcm.astype(np.int16),
                            np.zeros(int(20 * rate), np.int16)])
    path = tmp_path_factory.mktemp("wav") / "question.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.tobytes())
    return path


@pytest.fixture(scope="module")
def browser(question_wav, tmp_path_factory):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={question_wav}"],
        )
        try:
            yield b
        finally:
            b.close()
