"""Per-avatar voices (operator loop, item 3): names checked against the models folder, in the admin
and again by the agent, which speaks with the named voice or, when it is not on its disk, the default."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.settings import AgentSettings
from agent.voices import catalogue, problem


def test_the_catalogue_is_what_the_models_folder_has(agent_settings):
    have = catalogue(agent_settings.models_dir)
    assert agent_settings.piper_voice in have["en"] and "espeak" in have["en"]
    assert "zh-baker" in have["zh"] and "espeak" in have["zh"]
    assert catalogue(agent_settings.models_dir / "nothing-here") == {"en": ["espeak"], "zh": ["espeak"]}


@pytest.mark.parametrize(("lang", "name", "expect"), [
    ("en", "espeak", None),
    ("zh", "zh-baker", None),
    ("en", "piper/en_GB-nobody-low.onnx", "no en voice 'piper/en_GB-nobody-low.onnx' in the models folder; available:"),
    ("en", "../../etc/passwd", "is not a voice name"),
    ("zh", "zh/../x", "is not a voice name"),
    ("fr", "espeak", "English (en) and Mandarin (zh) only"),
])
def test_voice_names_are_checked_with_one_sentence(agent_settings, lang, name, expect):
    got = problem(lang, name, agent_settings.models_dir)
    assert got is None if expect is None else expect in got, got


def _speak(tts, text: str) -> tuple[np.ndarray, int]:
    async def run() -> tuple[np.ndarray, int]:
        frames = [ev.frame async for ev in tts.synthesize(text)]
        pcm = np.concatenate([np.frombuffer(f.data, np.int16) for f in frames])
        return pcm, frames[0].sample_rate

    return asyncio.run(run())


def test_the_agent_speaks_with_the_named_voice_or_the_default(monkeypatch):
    from agent.language import EspeakTTS
    from agent.models import shared_models
    from agent.tts import PiperTTS

    shared = shared_models(AgentSettings())
    espeak = shared.english_voice("espeak")
    assert isinstance(espeak, EspeakTTS)
    missing = shared.english_voice("piper/en_GB-nobody-low.onnx")
    assert isinstance(missing, PiperTTS) and missing.voice is shared.piper  # the default voice, not silence
    a, rate_a = _speak(espeak, "Hello there.")
    b, rate_b = _speak(PiperTTS(shared.piper), "Hello there.")
    assert rate_a == rate_b and len(a) > rate_a * 0.3 and len(b) > rate_b * 0.3
    assert len(a) != len(b) or not np.array_equal(a, b)  # two different voices said it
    models = shared.for_call({"en": "espeak"})
    assert models.tts is not None
