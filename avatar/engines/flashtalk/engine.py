"""FlashTalk behind the avatar worker's engine interface (:mod:`avatar.engines.base`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..base import Engine, EngineError, EngineInfo, EngineSession
from .avatar_file import load_avatar
from .pipeline import FlashTalkPipeline, FlashTalkStream
from .settings import FlashTalkSettings

logger = logging.getLogger("avatar.engines.flashtalk")


class FlashTalkSession(EngineSession):
    """One call. ``generate`` gets exactly ``chunk_frames`` frames' worth of audio and returns that many frames."""

    def __init__(self, info: EngineInfo, stream: FlashTalkStream) -> None:
        super().__init__(info)
        self.stream = stream

    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        """Render one chunk. Other sizes are accepted: whole chunks are rendered and a remainder is
        padded with silence, so the caller always gets frames for all the audio it gave."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not speaking and not audio.any():
            # idle between utterances: nothing may be pending, render silence
            return (
                self.stream.idle()
                if len(audio) == self.stream.samples_per_chunk
                else self._any(audio)
            )
        return self._any(audio)

    def _any(self, audio: np.ndarray) -> list[np.ndarray]:
        frames = self.stream.push(audio)
        frames.extend(self.stream.flush())
        return frames

    def interrupt(self) -> None:
        """Barge-in: drop pending audio, silence the audio context; the next chunk continues from the last frame."""
        self.stream.clear_buffer()

    def close(self) -> None:
        self.stream = None  # type: ignore[assignment]


class FlashTalkEngine(Engine):
    """Loads the DiT, the VAE and wav2vec2 once; one :class:`FlashTalkSession` per call."""

    def __init__(
        self, settings: FlashTalkSettings, pipeline: FlashTalkPipeline | None = None
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline or FlashTalkPipeline(settings)
        self.info = EngineInfo(
            name="flashtalk", width=settings.width, height=settings.height, fps=settings.fps,
            sample_rate=settings.sample_rate, chunk_frames=settings.chunk_frames,
        )  # fmt: skip

    def open_session(self, avatar_dir: Path | None = None) -> FlashTalkSession:
        """Start a call for the avatar prepared in ``avatar_dir`` (``None``: the ``default_avatar`` setting)."""
        if avatar_dir is None:
            if not self.settings.default_avatar:
                raise EngineError(
                    "flashtalk has no built-in avatar: prepare one (python -m avatar.engines.flashtalk.prepare) "
                    "and pass its folder, or set default_avatar."
                )
            avatar_dir = Path(self.settings.default_avatar)
        avatar = load_avatar(avatar_dir)
        return FlashTalkSession(self.info, self.pipeline.open_stream(avatar))

    def close(self) -> None:
        self.pipeline = None  # type: ignore[assignment]


def create_engine(**settings: Any) -> FlashTalkEngine:
    """Registry factory: build the engine from keyword settings (see the package docstring)."""
    return FlashTalkEngine(FlashTalkSettings.from_kwargs(**settings))
