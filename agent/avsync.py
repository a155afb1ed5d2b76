"""Audio/video offset of a recording, measured from the picture and the sound themselves.

    python -m agent.avsync out/demo.mp4 --mouth-box X,Y,W,H

The mouth's opening is read from the mouth box (an open mouth is a darker region:
the cavity between the lips), the voice's loudness from the audio track (RMS over
10 ms), both on the file's own timeline. The offset is the lag that best aligns the
two (Pearson correlation over +-``max_lag``): positive means the picture is late
(the voice leads the mouth), negative the mouth leads the voice.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOP_S = 0.01  # 10 ms grid


@dataclass(frozen=True)
class AvOffset:
    offset_s: float  # > 0: video behind audio
    correlation: float  # at the best lag
    seconds: float  # length of the signal compared

    def __str__(self) -> str:
        return (f"A/V offset {1000 * self.offset_s:+.0f} ms (video {'behind' if self.offset_s > 0 else 'ahead of'} "
                f"audio; correlation {self.correlation:.2f} over {self.seconds:.0f} s)")


def read_tracks(path: Path, mouth_box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(video frame times, mouth darkness per frame, audio samples float32, audio rate)."""
    import av

    x, y, w, h = mouth_box
    times, dark = [], []
    audio_parts: list[tuple[float, np.ndarray]] = []
    rate = 16000
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="gray")
            region = img[max(0, y): y + h, max(0, x): x + w].astype(np.float32)
            times.append(float(frame.time))
            dark.append(-float(region.mean()))
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            rate = frame.sample_rate
            pcm = frame.to_ndarray().astype(np.float32)
            pcm = pcm.reshape(-1) if pcm.shape[0] == 1 else pcm.mean(axis=0)
            audio_parts.append((float(frame.time), pcm))
    if not times or not audio_parts:
        raise ValueError(f"{path} needs both a video and an audio track")
    t0 = audio_parts[0][0]
    audio = np.zeros(int(round((audio_parts[-1][0] - t0) * rate)) + len(audio_parts[-1][1]), np.float32)
    for t, pcm in audio_parts:
        i = int(round((t - t0) * rate))
        audio[i: i + len(pcm)] = pcm[: len(audio) - i]
    # audio sample 0 is at t0 on the file's timeline
    pad = int(round(t0 * rate))
    if pad > 0:
        audio = np.concatenate([np.zeros(pad, np.float32), audio])
    return np.asarray(times), np.asarray(dark), audio, rate


def envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 10 ms."""
    hop = int(rate * HOP_S)
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1))


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (in samples of the grid) of ``b`` against ``a`` with the highest correlation."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            x, y = a[: len(a) - lag], b[lag:]
        else:
            x, y = a[-lag:], b[: len(b) + lag]
        if len(x) < 50 or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best


def measure(path: Path, mouth_box: tuple[int, int, int, int], *, max_lag: float = 0.5) -> AvOffset:
    times, dark, audio, rate = read_tracks(Path(path), mouth_box)
    env = envelope(audio, rate)
    grid = np.arange(times[0], times[-1], HOP_S)
    mouth = np.interp(grid, times, dark)
    i0 = int(round(times[0] / HOP_S))
    loud = np.zeros_like(grid)
    m = min(len(grid), max(0, len(env) - i0))
    loud[:m] = env[i0: i0 + m]
    # smooth the voice like a mouth moves (~50 ms), compare shapes not levels
    k = np.ones(5) / 5
    loud = np.convolve(loud, k, mode="same")
    lag, r = best_lag(loud, mouth, int(max_lag / HOP_S))
    return AvOffset(lag * HOP_S, r, len(grid) * HOP_S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--mouth-box", required=True, help="X,Y,W,H of the mouth in the video")
    args = ap.parse_args()
    box = tuple(int(v) for v in args.mouth_box.split(","))
    print(measure(Path(args.path), box))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
