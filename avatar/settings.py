"""Avatar worker settings from the environment (prefix AVATAR_)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.paths import cache_root


class AvatarSettings(BaseSettings):
    """What the avatar worker renders and how it registers with LiveKit."""

    model_config = SettingsConfigDict(env_prefix="AVATAR_", extra="ignore", populate_by_name=True)

    agent_name: str = "dh-avatar"  # the name the agent dispatches
    engine: str = "portrait"  # portrait (CPU default) | flashtalk (GPU) | simple
    width: int = 512
    height: int = 512
    fps: int = 25
    video_max_bitrate: int = 1_500_000  # bits/s for the avatar's video track
    avatar_dir: str = ""  # the default face: a prepared avatar folder; empty = the engine's built-in portrait
    # Where a call's own face comes from: the admin API, with a worker key (or the agent's key).
    admin_url: str = Field(default="", validation_alias=AliasChoices("AVATAR_ADMIN_URL", "DH_ADMIN_URL"))
    admin_api_key: str = Field(default="", validation_alias=AliasChoices("AVATAR_ADMIN_API_KEY", "DH_ADMIN_API_KEY"))
    cache_dir: Path = Field(default_factory=lambda: cache_root() / "calls")  # faces fetched from the admin, by revision
    # extra keyword settings for the engine (paths, device...): a mapping, given as JSON in the environment
    engine_options: dict[str, Any] = Field(default_factory=dict)
    render_threads: int = 2  # threads shared by all calls of this worker for engine compute
    sync_queue_ms: int = 100  # audio queued ahead of the room; each video frame leaves when its audio plays
    # ... plus this: the audio reaches the caller this much later than the video (measured, README "Benchmarks")
    sync_video_delay_ms: int = 110
    http_port: int = 8082  # the worker's health-check port
    metrics_port: int = 0  # Prometheus /metrics of this worker (agent/metrics.py); 0: off
    max_calls: int = 2  # calls one worker serves at once (its reported load); 2 on a 2-core box (README, "Benchmarks")
