"""Shared fixtures for the dialogue suite: personas and knowledge indexes are built once per session."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PERSONAS = Path(__file__).resolve().parents[2] / "dialogue" / "data" / "personas"


@pytest.fixture(scope="session")
def embedder():
    from dialogue.knowledge import Embedder

    return Embedder.shared()


@pytest.fixture(scope="session")
def persona_setup(embedder):
    """persona name -> (Persona, KnowledgeIndex), built once for the whole session."""
    from dialogue import DialogueSettings, load_knowledge, load_persona

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            persona = load_persona(PERSONAS / f"{name}.yaml")
            cache[name] = (persona, load_knowledge(DialogueSettings(persona_file=str(PERSONAS / f"{name}.yaml")), persona))
        return cache[name]

    return get


# ---- pass counts per category of the scripted conversations (printed at the end)
_results: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def pytest_runtest_logreport(report):
    if report.when == "setup" and not report.skipped:
        return
    if report.when not in ("call", "setup"):
        return
    param = report.nodeid.split("[", 1)[1].rstrip("]") if "[" in report.nodeid else ""
    if "test_conversations.py" in report.nodeid and "/" in param:
        category = param.split("/", 1)[0]
    elif "test_llm_server.py" in report.nodeid:
        # Tests needing the real llama.cpp server are told apart from the failure stubs.
        category = "llm_real_server" if "llama" in report.nodeid else "llm_failures"
    else:
        return
    _results[category]["passed" if report.passed else ("skipped" if report.skipped else "failed")] += 1


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    terminalreporter.write_sep("-", "dialogue conversations per category")
    for cat in sorted(_results):
        c = _results[cat]
        total = sum(c.values())
        terminalreporter.write_line(f"{cat:18} {c['passed']}/{total} passed" + (f", {c['failed']} failed" if c["failed"] else "")
                                    + (f", {c['skipped']} skipped" if c["skipped"] else ""))
