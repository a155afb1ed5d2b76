"""Agent settings from the environment (prefix AGENT_, plus LiveKit's own LIVEKIT_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .paths import cache_root
from .paths import models_dir as default_models_dir


class AgentSettings(BaseSettings):
    """The call: models, names and timeouts."""

    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore", populate_by_name=True)

    agent_name: str = "dh-agent"  # explicit dispatch name of the call agent
    avatar_agent_name: str = "dh-avatar"  # explicit dispatch name of the avatar worker
    avatar_enabled: bool = True
    avatar_join_timeout: float = 8.0  # seconds; after that the call goes on with audio only
    avatar_stall_timeout: float = 5.0  # seconds without playback from the avatar before audio-only
    models_dir: Path = Field(default_factory=default_models_dir, validation_alias="DH_MODELS_DIR")
    whisper_model: str = "whisper-base"  # folder under models_dir, or an absolute path
    whisper_compute_type: str = "int8"
    whisper_threads: int = 2
    whisper_language: str = ""  # empty = detect (among `languages`)
    whisper_window: str = "utterance"  # "utterance": encode the utterance + 1 s; "full": Whisper's 30 s window
    languages: str = "en,zh"  # languages a caller may speak (detection picks among these)
    piper_voice: str = "piper/en_US-joe-medium.onnx"
    zh_voice: str = "zh-baker"  # Mandarin voice folder (agent/zh_tts.py); "espeak": espeak-ng's Mandarin
    vad_model: str = "silero/silero_vad.onnx"
    min_silence: float = 0.25  # VAD silence (s) after which the end-of-turn model is asked
    min_speech: float = 0.05  # VAD speech (s) that starts an utterance
    turn_model: str = "smart-turn/smart-turn-v3.2-cpu.onnx"  # empty: commit turns on VAD silence alone
    turn_threshold: float = 0.5  # end-of-turn probability below which the agent waits for more
    endpointing_min_delay: float = 0.3  # s after the caller's last word before a complete turn is answered
    endpointing_max_delay: float = 1.6  # s the agent waits when the turn sounds unfinished
    interrupt_min_duration: float = 0.3  # s of caller speech over the answer that interrupt it (VAD-measured: a 250 ms cough reads ~0.3 s)
    preemptive_generation: bool = True  # start the answer on the final transcript, before the turn is committed
    handoff_timeout: float = 60.0  # s a caller waits for a colleague before the agent makes a call-back ticket
    max_calls: int = 2  # calls one worker accepts at once: what a 2-core box holds (README, "Benchmarks")
    greet: bool = True
    http_port: int = 8081  # the worker's health-check port
    metrics_port: int = 0  # Prometheus /metrics of this worker (agent/metrics.py); 0: off
    # The failover watcher (`python -m agent watch`, agent/failover.py): the /metrics URLs of the agent
    # workers it watches, comma-separated, and how often it reads them.
    watch_targets: str = ""
    watch_interval: float = 0.2
    # Session logging to the admin backend (empty URL: calls are only logged locally).
    admin_url: str = Field(default="", validation_alias="DH_ADMIN_URL")
    admin_api_key: str = Field(default="", validation_alias="DH_ADMIN_API_KEY")
    spool_dir: Path = Field(default_factory=lambda: cache_root() / "spool")
    call_cache_dir: Path = Field(default_factory=lambda: cache_root() / "calls")  # knowledge indexes fetched from the admin

    @property
    def language_list(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in self.languages.split(",") if x.strip())

    def model_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.models_dir / p


class ModelMissingError(RuntimeError):
    """A local model file is missing: the message names the set-up command."""


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelMissingError(
            f"{what} not found at {path}. Run `make models` (or `python scripts/setup_models.py`) "
            f"to assemble the local models folder, or set DH_MODELS_DIR."
        )
    return path
