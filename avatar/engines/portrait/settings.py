"""Settings of the portrait engine: one dataclass, laptop-friendly defaults.

Every field can be passed as a keyword to :func:`avatar.engines.portrait.create_engine`
(and to ``prepare``); the rules (conversion, unknown names refused) are :class:`EngineSettings`'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from agent.paths import cache_root

from ..base import EngineError, EngineSettings


class PortraitSettings(EngineSettings):
    """Options of the CPU portrait engine.

    width, height, fps: output video (fps must divide 16000).
    face_scale: face height (brow to chin) as a fraction of the frame height.
    head_motion: amplitude of idle head sway and breathing (0 disables, 1 natural).
    mouth_gain: how wide the mouth opens for loud vowels (1 natural).
    blink_interval_s: mean time between blinks.
    seed: seed of the per-call randomness (blinks, sway); None varies per call.
    cache_dir: where the default avatar is prepared and cached.
    face_venv: virtualenv with mediapipe used at preparation (scripts/setup_face.sh).
    min_face_px: smallest accepted face width in the source image, in pixels.
    max_image_side: largest accepted source image side, in pixels.
    threads: OpenCV threads used by this process (1 keeps one call on one core).
    """

    model_config = ConfigDict(frozen=True)
    engine: ClassVar[str] = "portrait"

    width: int = 512
    height: int = 512
    fps: int = 25
    face_scale: float = 0.42
    head_motion: float = 1.0
    mouth_gain: float = 1.0
    blink_interval_s: float = 4.0
    seed: int | None = None
    cache_dir: Path = Field(default_factory=lambda: cache_root() / "avatars")
    face_venv: Path = Field(default_factory=lambda: Path(os.environ.get("DH_FACE_VENV") or cache_root() / "venv-face"))
    min_face_px: int = 80
    max_image_side: int = 4096
    threads: int = 1

    @field_validator("cache_dir", "face_venv")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @model_validator(mode="after")
    def _check(self) -> PortraitSettings:
        if self.width < 64 or self.height < 64 or self.width > 2048 or self.height > 2048:
            raise EngineError(f"portrait engine size {self.width}x{self.height} is out of range; use 64..2048 pixels")
        if self.fps <= 0 or 16000 % self.fps:
            raise EngineError(f"portrait engine fps {self.fps} must divide 16000 (e.g. 25)")
        if not 0.15 <= self.face_scale <= 0.9:
            raise EngineError(f"face_scale {self.face_scale} is out of range; use 0.15..0.9")
        return self
