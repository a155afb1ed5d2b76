"""Shared fixtures: local model paths and, for end-to-end tests, a running stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
# What a failing end-to-end test's report shows of the agent's log: what it heard and decided.
_CALL_LOG_LINES = ("transcribed ", " decision=", "recognition failed", "switching to audio only")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that ran a stack gets the agent's recognitions and decisions in its report
    (CI keeps only the report; the logs in its tmp_path are gone with the machine)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    import json

    folders = []  # the test's own tmp_path, and the log folder of a stack fixture it used
    for value in getattr(item, "funcargs", {}).values():
        for v in (value, value.get("stack") if isinstance(value, dict) else None):
            if isinstance(v, Path):
                folders.append(v)
            elif v is not None and isinstance(getattr(v, "log_dir", None), Path):
                folders.append(v.log_dir)
    base = item.config._tmp_path_factory.getbasetemp()  # only folders pytest made for tests
    logs = sorted({log for f in folders if f.is_dir() and f.is_relative_to(base) for log in f.rglob("agent*.log")})
    for log in logs[:4]:
        lines = []
        for raw in log.read_text(errors="replace").splitlines():
            try:
                msg = json.loads(raw).get("message", "")
            except ValueError:
                msg = raw
            if any(k in msg for k in _CALL_LOG_LINES):
                lines.append(msg)
        if lines:
            report.sections.append((f"agent log {log}", "\n".join(lines[-40:])))


@pytest.fixture(scope="session")
def agent_settings():
    from agent.settings import AgentSettings

    s = AgentSettings()
    missing = [p for p in (s.model_path(s.whisper_model), s.model_path(s.piper_voice)) if not p.exists()]
    if missing:
        pytest.fail(f"local models missing ({missing[0]}): run `make models`")
    return s


@pytest.fixture(scope="session")
def whisper(agent_settings):
    """The real Whisper base model, for transcribing what the caller heard."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(agent_settings.model_path(agent_settings.whisper_model)), device="cpu", compute_type="int8")


@pytest.fixture(scope="session")
def say(agent_settings):
    """Synthesise a caller's question with the local Piper voice (int16, 16 kHz), the same samples on
    every run (Piper's random prosody made a whole session's tests share one rare, hard draw)."""
    from harness.caller import synthesize

    cache: dict[str, object] = {}

    def _say(text: str):
        if text not in cache:
            cache[text] = synthesize(text, agent_settings.model_path(agent_settings.piper_voice), steady=True)
        return cache[text]

    return _say


def transcribe(whisper, pcm) -> str:
    """What a person hears in ``pcm`` (int16 at 16 kHz), by the real Whisper model, in lower case."""
    import numpy as np

    segments, _ = whisper.transcribe(np.asarray(pcm).astype(np.float32) / 32768.0, language="en", beam_size=1)
    return " ".join(s.text for s in segments).lower()


def running_stack(tmp_path_factory, env: dict[str, str] | None = None):
    """livekit-server + avatar worker + agent worker on loopback (a generator for module fixtures)."""
    from harness.devstack import Stack, free_port

    s = Stack(log_dir=tmp_path_factory.mktemp("stack-logs"), http_port=free_port(), env=dict(env or {}))
    try:
        s.start_all()
    except Exception:
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """livekit-server + avatar worker + agent worker on loopback, for one test module."""
    yield from running_stack(tmp_path_factory)
