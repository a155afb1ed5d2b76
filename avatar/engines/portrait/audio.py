"""Speech -> mouth shape, one video frame of audio at a time (no look-ahead, no model).

Per frame we take a windowed FFT of the frame's samples and read a few band energies:
loudness (normalised by a slow automatic gain so quiet and loud voices both move the
mouth), a first-formant proxy (F1: open vowels like "aa" are higher) and a second-formant
proxy (F2: "ee" is high, "oo" low). Those give the jaw opening and the lip spread/round
shape; fricatives ("s", "f") get a narrow opening that shows teeth. A fast-attack,
slower-release filter turns the targets into smooth motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Viseme:
    """Targets of one frame: open 0..1, spread -1 (rounded) .. 1 (wide); level is the smoothed loudness 0..1."""

    open: float = 0.0
    spread: float = 0.0
    level: float = 0.0


class VisemeTracker:
    """Stateful per-call analyser: ``update(samples, speaking)`` -> smoothed :class:`Viseme`."""

    def __init__(self, sample_rate: int = 16000, frame_samples: int = 640, gain: float = 1.0):
        self.sr, self.n = sample_rate, frame_samples
        self.nfft = 1 << int(np.ceil(np.log2(frame_samples)))
        self.window = np.hanning(frame_samples).astype(np.float32)
        f = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        self.band_low = (f >= 150) & (f < 900)
        self.band_mid = (f >= 900) & (f < 2600)
        self.band_high = (f >= 3000) & (f < 7600)
        self.f1_bins = (f >= 250) & (f < 1000)
        self.f2_bins = (f >= 900) & (f < 2800)
        self.f1_freq, self.f2_freq = f[self.f1_bins], f[self.f2_bins]
        self.gain = gain
        self.peak_db = -22.0  # running speech level; adapts within a second of speech
        self.out = Viseme()

    def reset(self) -> None:
        """Forget the mouth state (after an interruption); keep the learnt voice level."""
        self.out = Viseme()

    def features(self, x: np.ndarray) -> Viseme:
        """Unsmoothed targets for one frame of samples."""
        rms = float(np.sqrt(np.mean(x * x) + 1e-12))
        level_db = 20 * np.log10(rms + 1e-9)
        if level_db < -55:  # digital silence / noise floor
            return Viseme()
        # Automatic gain: the loudest recent speech maps to a wide mouth.
        self.peak_db = max(level_db, self.peak_db - 0.08)
        loud = float(np.clip((level_db - (self.peak_db - 30.0)) / 26.0, 0.0, 1.0))
        spec = np.abs(np.fft.rfft(x * self.window, self.nfft)) ** 2
        low, mid, high = spec[self.band_low].sum(), spec[self.band_mid].sum(), spec[self.band_high].sum()
        total = low + mid + high + 1e-12
        voiced = (low + mid) / total
        p1, p2 = spec[self.f1_bins], spec[self.f2_bins]
        f1 = float(p1 @ self.f1_freq / (p1.sum() + 1e-12))
        f2 = float(p2 @ self.f2_freq / (p2.sum() + 1e-12))
        f1n = float(np.clip((f1 - 350.0) / 400.0, 0.0, 1.0))
        openness = loud ** 1.2 * (0.55 + 0.45 * f1n) * (0.3 + 0.7 * voiced)
        if voiced < 0.35:  # fricative: teeth nearly together, lips slightly apart
            openness = min(openness, 0.18 * loud + 0.05)
        spread = float(np.clip((f2 - 1500.0) / 600.0, -1.0, 1.0)) * voiced * min(loud * 2, 1.0)
        return Viseme(open=float(np.clip(openness * self.gain, 0, 1)), spread=spread, level=loud)

    def update(self, x: np.ndarray, speaking: bool) -> Viseme:
        """Analyse one frame of audio and return the smoothed mouth targets."""
        target = self.features(x) if speaking else Viseme()
        o = self.out
        # Open quickly (speech onsets are sharp), close a little slower, never jump.
        k = 0.7 if target.open > o.open else 0.45
        new_open = o.open + k * (target.open - o.open)
        new_open = o.open + float(np.clip(new_open - o.open, -0.3, 0.35))
        self.out = Viseme(
            open=new_open,
            spread=o.spread + 0.4 * (target.spread - o.spread),
            level=o.level + 0.3 * (target.level - o.level),
        )
        return self.out
