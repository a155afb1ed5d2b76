"""The simple engine: a real portrait whose mouth opens with the speech loudness.

Kept as a light fallback and for tests of the worker itself; the portrait engine
(avatar.engines.portrait) is the default CPU engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ..portraits import default_portrait
from .base import Engine, EngineInfo, EngineSession, EngineSettings

_LIPS = np.array([150, 60, 60], np.float32)
_INSIDE = np.array([45, 12, 15], np.float32)


class SimpleSession(EngineSession):
    def __init__(self, info: EngineInfo, base: np.ndarray, mouth: tuple[int, int], half_w: int) -> None:
        super().__init__(info)
        self._base = base
        self._cx, self._cy = mouth
        self._half_w = half_w
        self._open = 0.0  # 0..1, smoothed
        h, w = base.shape[:2]
        self._yy, self._xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.mouth_box = (self._cx - 2 * half_w, self._cy - half_w, 4 * half_w, 3 * half_w)

    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        audio = self.chunk(audio)
        spf = self.info.samples_per_frame
        frames = []
        for i in range(self.info.chunk_frames):
            piece = audio[i * spf : (i + 1) * spf]
            rms = float(np.sqrt(np.mean(piece.astype(np.float32) ** 2))) if piece.size else 0.0
            target = min(1.0, rms * 6.0) if speaking else 0.0
            # fast attack, slower release: mouths open quickly and close a bit more softly
            k = 0.6 if target > self._open else 0.35
            self._open += k * (target - self._open)
            frames.append(self._render(self._open))
        return frames

    def _render(self, openness: float) -> np.ndarray:
        frame = self._base.copy()
        if openness < 0.03:
            return frame
        a = self._half_w * (0.8 + 0.2 * openness)
        b = max(1.0, self._half_w * 0.55 * openness)
        x0, x1 = self._cx - self._half_w - 2, self._cx + self._half_w + 3
        y0, y1 = int(self._cy - b - 4), int(self._cy + b + 5)
        xx, yy = self._xx[y0:y1, x0:x1], self._yy[y0:y1, x0:x1]
        d = ((xx - self._cx) / a) ** 2 + ((yy - self._cy) / b) ** 2
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        lips = (d <= 1.25)[..., None]
        inside = (d <= 0.8)[..., None]
        roi = np.where(lips, 0.5 * roi + 0.5 * _LIPS, roi)
        roi = np.where(inside, _INSIDE, roi)
        frame[y0:y1, x0:x1] = roi.astype(np.uint8)
        return frame

    def interrupt(self) -> None:
        # Next frames render with silence; the release constant closes the mouth in ~3 frames.
        pass


class SimpleSettings(EngineSettings):
    """The simple engine's settings: only the output video's size and rate."""

    engine: ClassVar[str] = "simple"

    width: int = 512
    height: int = 512
    fps: int = 25


class SimpleEngine(Engine):
    def __init__(self, settings: SimpleSettings | None = None) -> None:
        s = settings or SimpleSettings()
        self.info = EngineInfo(name="simple", width=s.width, height=s.height, fps=s.fps)
        self._portrait = default_portrait(s.width, s.height)

    def open_session(self, avatar_dir: Path | None = None) -> EngineSession:
        p = self._portrait
        return SimpleSession(self.info, p.image, p.mouth_center, p.mouth_half_width)


def create_engine(**settings: object) -> SimpleEngine:
    return SimpleEngine(SimpleSettings.from_kwargs(**settings))


def prepare(image: np.ndarray, out_dir: Path, **settings: object) -> dict:
    """The simple engine needs no preparation: it stores the image as is."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(out / "portrait.png")
    return {"engine": "simple", "width": int(image.shape[1]), "height": int(image.shape[0])}
