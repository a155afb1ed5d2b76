"""Local models: the real STT and TTS through the framework's interfaces, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from livekit import rtc

from agent.settings import AgentSettings, ModelMissingError, require
from agent.stt import WhisperSTT
from agent.tts import PiperTTS


def test_missing_model_names_the_setup_command(tmp_path):
    s = AgentSettings(DH_MODELS_DIR=str(tmp_path))
    with pytest.raises(ModelMissingError, match="make models"):
        require(s.model_path(s.whisper_model), "Whisper model folder")


def test_agent_main_refuses_to_start_without_models(tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {"DH_MODELS_DIR": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "agent", "start"], env=env, capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode != 0
    assert "make models" in r.stderr


async def test_piper_speaks_and_whisper_hears_it(agent_settings):
    tts = PiperTTS(agent_settings.model_path(agent_settings.piper_voice))
    frames = [ev.frame async for ev in tts.synthesize("Our branches open at nine on Monday.")]
    audio = rtc.combine_audio_frames(frames)
    assert audio.sample_rate == tts.sample_rate and audio.duration > 1.0
    stt = WhisperSTT(agent_settings.model_path(agent_settings.whisper_model))
    ev = await stt.recognize(frames)
    text = ev.alternatives[0].text.lower()
    assert "monday" in text and ("nine" in text or " 9" in text), text
    assert ev.alternatives[0].language == "en"
    await tts.aclose()
    await stt.aclose()


def test_token_dispatches_the_agent():
    import jwt

    from agent.token import caller_token

    claims = jwt.decode(caller_token("room-a", "alice", ttl_minutes=10), options={"verify_signature": False})
    assert claims["video"]["room"] == "room-a" and claims["video"]["roomJoin"] is True
    assert claims["roomConfig"]["agents"][0]["agentName"] == "dh-agent"
    assert claims["exp"] - claims["nbf"] <= 10 * 60 + 1
