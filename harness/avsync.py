"""Audio/video offset of a recording, measured from the picture and the sound themselves.

    python -m harness.avsync out/demo.mp4 --mouth-box X,Y,W,H

The mouth's activity is read from the mouth box (how much it changes from one frame
to the next: a talking mouth changes it several times more than a listening face),
the voice's loudness from the audio track (RMS over 10 ms), both on the file's own
timeline and smoothed alike (~100 ms, the pace of syllables). The offset is the lag that
best aligns the two (Pearson correlation over +-``max_lag`` in 10 ms steps, refined
by a parabola through the peak): positive means the picture is late (the voice
leads the mouth), negative the mouth leads the voice.
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
    """(video frame times, mouth change per frame, audio samples float32, audio rate)."""
    import av

    x, y, w, h = mouth_box
    times, motion = [], []
    prev = None
    audio_parts: list[tuple[float, np.ndarray]] = []
    rate = 16000
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="gray")
            region = img[max(0, y): y + h, max(0, x): x + w].astype(np.float32)
            times.append(float(frame.time))
            motion.append(0.0 if prev is None or prev.shape != region.shape else float(np.abs(region - prev).mean()))
            prev = region
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
    return np.asarray(times), np.asarray(motion), audio, rate


def envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 10 ms."""
    hop = int(rate * HOP_S)
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1))


def offset_of(t_video: np.ndarray, mouth: np.ndarray, t_audio: np.ndarray, loud: np.ndarray, *,
              max_lag: float = 0.4, smooth: float = 0.1) -> AvOffset:
    """The offset between a mouth-activity series and a loudness series, each with its own times."""
    t0, t1 = max(t_video[0], t_audio[0]), min(t_video[-1], t_audio[-1])
    grid = np.arange(t0, t1, HOP_S)
    if len(grid) < 200:
        raise ValueError("less than 2 s of overlapping audio and video")
    k = np.ones(max(1, int(smooth / HOP_S)))
    k /= k.sum()
    m = np.convolve(np.interp(grid, t_video, mouth), k, mode="same")
    a = np.convolve(np.interp(grid, t_audio, loud), k, mode="same")
    n = int(max_lag / HOP_S)
    lags = range(-n, n + 1)
    rs = []
    for lag in lags:
        x, y = (a[: len(a) - lag], m[lag:]) if lag >= 0 else (a[-lag:], m[: len(m) + lag])
        rs.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else -1.0)
    i = int(np.argmax(rs))
    frac = 0.0
    if 0 < i < len(rs) - 1:  # parabola through the peak and its neighbours
        y0, y1, y2 = rs[i - 1], rs[i], rs[i + 1]
        den = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / den if den else 0.0
    return AvOffset((lags[i] + frac) * HOP_S, rs[i], len(grid) * HOP_S)


def measure(path: Path, mouth_box: tuple[int, int, int, int], *, max_lag: float = 0.4) -> AvOffset:
    """The A/V offset of a recording (see the module docstring)."""
    times, motion, audio, rate = read_tracks(Path(path), mouth_box)
    env = envelope(audio, rate)
    t_audio = np.arange(len(env)) * HOP_S + HOP_S / 2
    return offset_of(times, motion, t_audio, env, max_lag=max_lag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--mouth-box", required=True, help="X,Y,W,H of the mouth in the video")
    args = ap.parse_args()
    box = tuple(int(v) for v in args.mouth_box.split(","))
    print(measure(Path(args.path), box))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
