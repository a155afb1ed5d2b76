"""The portrait engine and its per-call session (see :mod:`avatar.engines.base`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from ..base import Engine, EngineError, EngineInfo, EngineSession
from .audio import VisemeTracker
from .motion import Blinker, HeadSway
from .prepare import default_avatar_dir
from .render import FaceState, Renderer
from .rig import Rig
from .settings import PortraitSettings

logger = logging.getLogger("avatar.engines.portrait")

# Mouth opening kept on the frames after interrupt(): closed on the third frame (120 ms),
# already within a pixel or two on the second (80 ms), without a one-frame snap.
_CLOSE_AFTER_INTERRUPT = (0.4, 0.05, 0.0)


class PortraitEngine(Engine):
    """CPU talking-portrait engine. Rigs are built once per (avatar, size) and shared by all calls."""

    def __init__(self, settings: PortraitSettings):
        self.settings = settings
        self.info = EngineInfo("portrait", settings.width, settings.height, settings.fps, 16000, 1)
        _ = self.info.samples_per_frame  # validates fps
        cv2.setNumThreads(max(1, settings.threads))
        self._rigs: dict[Path, Rig] = {}
        self._lock = threading.Lock()

    def rig(self, avatar_dir: Path | None = None) -> Rig:
        """The shared rig for ``avatar_dir`` (None: the built-in astronaut), built on first use."""
        with self._lock:
            path = Path(avatar_dir) if avatar_dir is not None else default_avatar_dir(self.settings)
            path = path.resolve()
            if path not in self._rigs:
                if not (path / "meta.json").exists():
                    raise EngineError(f"no prepared portrait avatar in {path}; prepare the avatar first")
                s = self.settings
                self._rigs[path] = Rig(path, s.width, s.height, s.face_scale)
                logger.info("portrait rig ready for %s at %dx%d", path, s.width, s.height)
            return self._rigs[path]

    def open_session(self, avatar_dir: Path | None = None) -> PortraitSession:
        """Start a call for a prepared avatar folder, or the built-in one when ``avatar_dir`` is None."""
        return PortraitSession(self.info, self.rig(avatar_dir), self.settings)

    def close(self) -> None:
        """Drop the cached rigs."""
        with self._lock:
            self._rigs.clear()


class PortraitSession(EngineSession):
    """One call: audio-driven mouth, blinks, head sway. ``state`` is the last frame's FaceState."""

    def __init__(self, info: EngineInfo, rig: Rig, settings: PortraitSettings):
        super().__init__(info)
        self.rig = rig
        self.renderer = Renderer(rig)
        rng = np.random.default_rng(settings.seed)
        self.visemes = VisemeTracker(info.sample_rate, info.samples_per_frame, settings.mouth_gain)
        self.blinker = Blinker(info.fps, settings.blink_interval_s, rng)
        self.sway = HeadSway(info.fps, settings.head_motion, info.height, rng)
        self.state = FaceState()
        self._closing: list[float] = []
        self._close_from = (0.0, 0.0)

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) around the lips and the jaw's travel, for viewers and tests."""
        m = self.rig.mouth
        cx, cy = (float(v) for v in m.origin)
        w = 1.6 * m.mouth_w
        return int(cx - w / 2), int(cy - 0.35 * w), int(w), int(0.9 * w)

    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        """Render one frame showing ``audio`` (``samples_per_chunk`` float32 samples)."""
        x = self.chunk(audio)
        if self._closing:
            k = self._closing.pop(0)
            self.visemes.reset()
            open_, spread = self._close_from[0] * k, self._close_from[1] * k
            level = 0.0
        else:
            v = self.visemes.update(x, speaking)
            open_, spread, level = v.open, v.spread, v.level
        roll, dx, dy, scale = self.sway.step(level)
        self.state = FaceState(open=open_, spread=spread, blink=self.blinker.step(),
                               roll=roll, dx=dx, dy=dy, scale=scale)
        return [self.renderer.render(self.state)]

    def interrupt(self) -> None:
        """Barge-in: close the mouth over the next frames (closed by the third, 120 ms)."""
        self._close_from = (self.state.open, self.state.spread)
        self._closing = list(_CLOSE_AFTER_INTERRUPT)
        self.visemes.reset()

    def close(self) -> None:
        """Nothing to free: the rig is shared by the engine."""
