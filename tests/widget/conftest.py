"""Fixtures for the browser tests: the stack, the admin server, headless Chromium with fake media."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.devstack import REPO

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


@pytest.fixture(scope="module")
def admin(stack, tmp_path_factory):
    """The admin backend of this stack, with the public widget routes on for its avatar."""
    values = stack.start_admin(
        tmp_path_factory.mktemp("admin"), enable_widget=True, extra_env={"ADMIN_WIDGET_RATE_LIMIT": "30/60"}
    )
    return SimpleNamespace(url=values["DH_ADMIN_URL"], avatar_id=values["DH_AVATAR_ID"])


@pytest.fixture(scope="session")
def question_wav(agent_settings, tmp_path_factory) -> Path:
    """The caller's question as the fake microphone: silence, the question, a long silence.

    Chromium loops the file, so the silence after the question leaves the agent time to answer.
    """
    from harness.caller import fake_microphone_wav, synthesize

    pcm = synthesize(QUESTION, agent_settings.model_path(agent_settings.piper_voice), steady=True)
    return fake_microphone_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm, lead=3.5, tail=20)


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
