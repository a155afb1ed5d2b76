"""FlashTalk behind the avatar worker's engine interface (:mod:`avatar.engines.base`)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..base import Engine, EngineError, EngineInfo, EngineSession
from .avatar_file import AvatarFeatures, load_avatar
from .pipeline import FlashTalkPipeline, FlashTalkStream
from .settings import FlashTalkSettings

logger = logging.getLogger("avatar.engines.flashtalk")


class FlashTalkSession(EngineSession):
    """One call. ``generate`` gets exactly ``chunk_frames`` frames' worth of audio and returns that many frames."""

    def __init__(self, info: EngineInfo, stream: FlashTalkStream) -> None:
        super().__init__(info)
        self.stream = stream

    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        """Render one chunk (``samples_per_chunk`` samples, as the generator cuts them)."""
        audio = self.chunk(audio)
        if not speaking and not audio.any():
            return self.stream.idle()  # idle between utterances: nothing may be pending, render silence
        return self.stream.push(audio)  # exactly one chunk: nothing is left pending

    def interrupt(self) -> None:
        """Barge-in: drop pending audio, silence the audio context; the next chunk continues from the last frame."""
        self.stream.clear_buffer()

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()
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
        return self.open_avatar(load_avatar(avatar_dir))

    def open_avatar(self, avatar: AvatarFeatures) -> FlashTalkSession:
        """Start a call for already loaded avatar features."""
        return FlashTalkSession(self.info, self.pipeline.open_stream(avatar))

    def close(self) -> None:
        self.pipeline = None  # type: ignore[assignment]


class LeaderStream(FlashTalkStream):
    """Rank 0's stream of a sequence-parallel engine: every chunk is announced to the followers first."""

    def __init__(self, pipe: FlashTalkPipeline, avatar, group, sid: int) -> None:
        self.group, self.sid = group, sid
        super().__init__(pipe, avatar)  # checks the avatar before the followers see it
        with group.lock:
            group.send("open", sid, avatar)

    def _render(self, chunk: np.ndarray):
        # one chunk at a time over the whole group: the command and the collectives stay in order
        with self.group.lock:
            self.group.send("chunk", self.sid)
            return super()._render(chunk)

    def close(self) -> None:
        with self.group.lock:
            if not self.group.closed:
                self.group.send("close", self.sid)


class ParallelFlashTalkEngine(FlashTalkEngine):
    """Sequence parallelism over ``settings.sequence_parallel`` ranks: this process is rank 0 (it
    talks to the worker and LiveKit); :mod:`.launch` starts the other ranks, one per GPU."""

    def __init__(
        self,
        settings: FlashTalkSettings,
        *,
        builder: str = "avatar.engines.flashtalk.pipeline:build_pipeline",
        builder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Every rank, this one included, builds its pipeline with ``builder`` ("module:function",
        called as ``function(sp=, device=, **builder_kwargs)``; default: from the settings)."""
        import importlib

        from .launch import device_for_rank, start_group

        world = settings.sequence_parallel
        kwargs = (
            {"settings": settings.model_dump()}
            if builder_kwargs is None
            else builder_kwargs
        )
        self.group = start_group(world, settings.device, builder, kwargs)
        try:
            dev = device_for_rank(settings.device, 0)
            module, _, name = builder.partition(":")
            build = getattr(importlib.import_module(module), name)
            pipeline = build(sp=self.group.sp, device=dev, **kwargs)
            super().__init__(pipeline.settings, pipeline)
        except BaseException:
            self.group.close()
            raise
        self._ids = itertools.count()

    def open_session(self, avatar_dir: Path | None = None) -> FlashTalkSession:
        if avatar_dir is None:
            if not self.settings.default_avatar:
                return super().open_session(None)  # raises the one-sentence error
            avatar_dir = Path(self.settings.default_avatar)
        return self.open_avatar(load_avatar(avatar_dir))

    def open_avatar(self, avatar: AvatarFeatures) -> FlashTalkSession:
        stream = LeaderStream(self.pipeline, avatar, self.group, next(self._ids))
        return FlashTalkSession(self.info, stream)

    def close(self) -> None:
        self.group.close()
        super().close()


def create_engine(**settings: Any) -> FlashTalkEngine:
    """Registry factory: build the engine from keyword settings (see the package docstring).

    ``sequence_parallel`` > 1 starts that many ranks (one process per GPU, this one rank 0)."""
    s = FlashTalkSettings.from_kwargs(**settings)
    if s.sequence_parallel > 1:
        return ParallelFlashTalkEngine(s)
    return FlashTalkEngine(s)
