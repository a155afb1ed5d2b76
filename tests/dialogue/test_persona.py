"""Persona profiles and the dialogue package's independence from LiveKit and the other rooms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dialogue import greeting, load_persona
from dialogue.persona import DEFAULT_PERSONA, Persona


def test_default_persona_and_greeting():
    p = load_persona()
    assert p.name == "Ava" and set(p.languages) == {"en", "zh"}
    assert "Harbor Bank" in greeting() and "海港银行" in greeting(language="zh")


def test_persona_from_admin_json():
    """The admin backend stores a persona as JSON; the policy takes it as a dict."""
    p = load_persona({
        "id": "t1", "name": "Zoe", "organisation": "City Library", "greeting": {"en": "Hi, Zoe here."},
        "forbidden_topics": [{"name": "politics", "keywords": {"en": ["election"]}, "reply": {"en": "I stay out of politics."}}],
        "escalation": [{"reason": "lost property", "keywords": {"en": ["lost my bag"]}}],
    })
    assert p.greeting_for("zh") == "Hi, Zoe here."  # falls back to the default language
    assert p.forbidden_topic("who wins the election?", "en").name == "politics"
    assert p.escalation_rule("I lost my bag here yesterday").reason == "lost property"
    assert "Zoe" in p.system_prompt("en") and "politics" in p.system_prompt("en")


def test_missing_persona_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="DIALOGUE_PERSONA_FILE"):
        load_persona(tmp_path / "nope.yaml")


def test_all_demo_personas_load():
    for name in ("bank", "tutoring", "shop"):
        p = load_persona(DEFAULT_PERSONA.with_name(f"{name}.yaml"))
        assert isinstance(p, Persona) and all(path.exists() for path in p.knowledge_paths())


def test_dialogue_imports_nothing_from_livekit_or_other_rooms():
    code = ("import sys, dialogue, dialogue.grounded, dialogue.knowledge, dialogue.openai_policy, dialogue.guardrails; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('livekit', 'agent', 'avatar', 'admin')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
