"""Resampling speech between the voices', the call's and the avatar's rates, in one place."""

from __future__ import annotations

import numpy as np
from livekit import rtc


class Resampled:
    """Mono int16 speech from ``src`` Hz to ``dst`` Hz through one stateful ``rtc.AudioResampler``
    for a whole utterance (frames resampled one by one would leave a seam at each)."""

    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self._rs = rtc.AudioResampler(src, dst, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH) if src != dst else None

    def push(self, pcm: np.ndarray) -> bytes:
        if self._rs is None:
            return pcm.tobytes()
        return b"".join(bytes(f.data) for f in self._rs.push(rtc.AudioFrame(pcm.tobytes(), self.src, 1, len(pcm))))

    def flush(self) -> bytes:
        return b"" if self._rs is None else b"".join(bytes(f.data) for f in self._rs.flush())
