"""Idle life: blinks at natural intervals, small head sway and breathing (seeded per call)."""

from __future__ import annotations

import numpy as np


class Blinker:
    """Schedules blinks: gamma-distributed gaps around a mean interval, sometimes a double blink."""

    # Lid closure over 0.24 s: fast close, slower open (sampled at the engine's fps).
    _SHAPE_T = np.array([0.0, 0.04, 0.08, 0.12, 0.16, 0.20, 0.24])
    _SHAPE_V = np.array([0.0, 0.45, 1.0, 0.8, 0.45, 0.15, 0.0])

    def __init__(self, fps: int, mean_interval_s: float, rng: np.random.Generator):
        self.fps, self.mean, self.rng = fps, max(mean_interval_s, 0.5), rng
        t = np.arange(1, int(np.ceil(0.24 * fps)) + 1) / fps
        self.shape = np.interp(t, self._SHAPE_T, self._SHAPE_V)
        self.wait = self._gap(first=True)
        self.pos = -1

    def _gap(self, first: bool = False) -> int:
        s = self.rng.gamma(3.0, self.mean / 3.0)
        if first:
            s *= self.rng.uniform(0.2, 0.8)
        return max(int(s * self.fps), int(1.2 * self.fps) if not first else 2)

    def step(self) -> float:
        """Advance one frame; return lid closure 0..1."""
        if self.pos >= 0:
            v = float(self.shape[self.pos])
            self.pos += 1
            if self.pos >= len(self.shape):
                self.pos = -1
                # One blink in seven is doubled, as people do.
                self.wait = int(0.12 * self.fps) + 1 if self.rng.random() < 0.15 else self._gap()
            return v
        self.wait -= 1
        if self.wait <= 0:
            self.pos = 0
        return 0.0


class HeadSway:
    """Slow quasi-random head roll/translation plus breathing, a little livelier while speaking."""

    def __init__(self, fps: int, amplitude: float, frame_h: int, rng: np.random.Generator):
        self.fps, self.amp, self.px = fps, amplitude, frame_h / 512.0
        # Incommensurate frequencies (Hz) with random phases never visibly repeat.
        self.freqs = rng.uniform([0.07, 0.11, 0.05, 0.09, 0.13, 0.17], [0.12, 0.19, 0.09, 0.15, 0.21, 0.27])
        self.phase = rng.uniform(0, 2 * np.pi, 6)
        self.breath_hz = rng.uniform(0.22, 0.3)
        self.t = 0.0
        self.nod = 0.0

    def step(self, speech_level: float) -> tuple[float, float, float, float]:
        """Advance one frame; return (roll radians, dx, dy, scale)."""
        self.t += 1.0 / self.fps
        w = 2 * np.pi * self.freqs * self.t + self.phase
        s = np.sin(w)
        # Speech adds small nods that follow the loudness, smoothed.
        self.nod += 0.15 * (speech_level - self.nod)
        a, px = self.amp, self.px
        roll = a * (0.010 * s[0] + 0.005 * s[3])
        dx = a * px * (1.6 * s[1] + 0.6 * s[4])
        breath = np.sin(2 * np.pi * self.breath_hz * self.t)
        dy = a * px * (0.8 * s[2] + 0.4 * s[5] + 0.6 * breath + 1.6 * self.nod)
        scale = 1.0 + a * 0.003 * breath
        return float(roll), float(dx), float(dy), float(scale)
