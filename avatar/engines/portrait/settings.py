"""Settings of the portrait engine: one dataclass, laptop-friendly defaults.

Every field can be passed as a keyword to :func:`avatar.engines.portrait.create_engine`
(and to ``prepare``); unknown keywords are rejected so a typo is not silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..base import EngineError


def _cache_root() -> Path:
    return Path(os.environ.get("DH_CACHE", Path.home() / ".cache" / "dh-agent"))  # the one cache root (README)


@dataclass(frozen=True)
class PortraitSettings:
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

    width: int = 512
    height: int = 512
    fps: int = 25
    face_scale: float = 0.42
    head_motion: float = 1.0
    mouth_gain: float = 1.0
    blink_interval_s: float = 4.0
    seed: int | None = None
    cache_dir: Path = _cache_root() / "avatars"
    face_venv: Path = Path(os.environ.get("DH_FACE_VENV", _cache_root() / "venv-face"))
    min_face_px: int = 80
    max_image_side: int = 4096
    threads: int = 1

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> PortraitSettings:
        """Build settings from keyword arguments, rejecting unknown names and bad values."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise EngineError(
                f"unknown portrait engine setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        for key in ("cache_dir", "face_venv"):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = Path(kwargs[key]).expanduser()
        s = cls(**{k: v for k, v in kwargs.items() if v is not None or k == "seed"})
        if s.width < 64 or s.height < 64 or s.width > 2048 or s.height > 2048:
            raise EngineError(f"portrait engine size {s.width}x{s.height} is out of range; use 64..2048 pixels")
        if s.fps <= 0 or 16000 % s.fps:
            raise EngineError(f"portrait engine fps {s.fps} must divide 16000 (e.g. 25)")
        if not 0.15 <= s.face_scale <= 0.9:
            raise EngineError(f"face_scale {s.face_scale} is out of range; use 0.15..0.9")
        return s
