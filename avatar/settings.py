"""Avatar worker settings from the environment (prefix AVATAR_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AvatarSettings(BaseSettings):
    """What the avatar worker renders and how it registers with LiveKit."""

    model_config = SettingsConfigDict(env_prefix="AVATAR_", extra="ignore")

    agent_name: str = "dh-avatar"  # the name the agent dispatches
    engine: str = "portrait"  # portrait (CPU default) | flashtalk (GPU) | simple
    width: int = 512
    height: int = 512
    fps: int = 25
    video_max_bitrate: int = 1_500_000  # bits/s for the avatar's video track
    audio_sample_rate: int = 16000  # what the agent streams and the avatar publishes
    avatar_dir: str = ""  # a prepared avatar folder; empty = the engine's built-in portrait
    engine_options: str = "{}"  # JSON: extra keyword settings for the engine (paths, device...)
    render_threads: int = 2  # threads shared by all calls of this worker for engine compute
    sync_queue_ms: int = 100  # audio/video queued ahead of the room (60 measured worse: -176 ms, more latency)
    http_port: int = 8082  # the worker's health-check port
    max_calls: int = 2  # calls one worker serves at once (its reported load); 2 on a 2-core box (README, "Benchmarks")
