"""The one small interface every avatar engine implements.

An *engine* is loaded once per worker process (weights, caches) and shared by
all calls that process serves. A *session* is one call's state (motion, RNG,
blink timers...). The avatar worker drives a session from a single worker
thread, never from the event loop, so engine code may be slow and blocking.

Audio in: mono float32 in [-1, 1] at ``EngineInfo.sample_rate``.
Video out: RGB ``uint8`` arrays of shape ``(height, width, 3)``.

Per call, the worker calls ``generate`` with exactly ``chunk_frames`` video
frames' worth of audio (``samples_per_chunk``) and gets back ``chunk_frames``
frames aligned 1:1 with that audio: frame ``i`` shows audio samples
``[i*spf, (i+1)*spf)`` where ``spf = sample_rate / fps``. Between utterances
the worker keeps calling ``generate`` with silence and ``speaking=False`` so
the face stays alive (blinks, breathing). On interruption it calls
``interrupt()`` and then continues with silence; the engine must not emit a
broken frame and should close the mouth quickly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError


class EngineError(RuntimeError):
    """A problem the operator can fix (missing model, bad setting): one clear sentence."""


class PreparationError(EngineError):
    """An avatar image could not be prepared (no face, several faces, unreadable...)."""


class EngineSettings(BaseModel):
    """Base of every engine's settings: typed fields, and one rule for all engines.

    Values may come as strings (environment, JSON): they are converted to the field's type
    ("true"/"1"/"on" for booleans, numbers, paths). ``None`` means "the default". An unknown
    name is refused with the list of known ones, so a typo is never silently ignored.
    Impossible values raise :class:`EngineError` with one sentence.
    """

    model_config = ConfigDict(extra="forbid", validate_default=False)
    engine: ClassVar[str] = "engine"

    @classmethod
    def from_kwargs(cls, **settings: Any) -> Self:
        given = {k: (str(v) if isinstance(v, PurePath) else v) for k, v in settings.items() if v is not None}
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            errors = e.errors()
            unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
            if unknown:
                raise EngineError(
                    f"unknown {cls.engine} engine setting(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(cls.model_fields))}"
                ) from None
            err = errors[0]
            raise EngineError(
                f"{cls.engine} engine setting {'.'.join(map(str, err['loc']))}={err.get('input')!r}: {err['msg']}"
            ) from None


@dataclass(frozen=True)
class EngineInfo:
    name: str
    width: int
    height: int
    fps: int
    sample_rate: int = 16000
    chunk_frames: int = 1

    @property
    def samples_per_frame(self) -> int:
        spf, rem = divmod(self.sample_rate, self.fps)
        if rem:
            raise EngineError(f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}")
        return spf

    @property
    def samples_per_chunk(self) -> int:
        return self.samples_per_frame * self.chunk_frames


class EngineSession(ABC):
    """One call's rendering state. Not thread-safe: one caller thread at a time."""

    def __init__(self, info: EngineInfo) -> None:
        self.info = info

    @abstractmethod
    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        """Render ``info.chunk_frames`` frames for ``info.samples_per_chunk`` samples of audio
        (the generator cuts speech into exactly such chunks: engines do not pad or re-cut)."""

    def chunk(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` as the one chunk an engine renders: mono float32 of ``samples_per_chunk``
        samples, non-finite samples silenced; another size is a caller's bug, refused."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size != self.info.samples_per_chunk:
            raise EngineError(
                f"{self.info.name} renders {self.info.samples_per_chunk} samples per call, got {x.size}"
            )
        return x if np.all(np.isfinite(x)) else np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    @abstractmethod
    def interrupt(self) -> None:
        """Drop any pending audio-driven state and return to idle (mouth closing)."""

    def close(self) -> None:
        """Free per-call resources."""


class Engine(ABC):
    """A loaded engine, shared by the calls of one worker process."""

    info: EngineInfo

    @abstractmethod
    def open_session(self, avatar_dir: Path | None = None) -> EngineSession:
        """Start a call for the avatar prepared in ``avatar_dir`` (``None``: the built-in default)."""

    def close(self) -> None:
        """Free the engine's resources (weights, threads)."""
