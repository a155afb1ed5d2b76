"""Contact sheets for a person to look at: ``python -m avatar.engines.portrait.sheet [--out out/portrait]``.

For the real photo (built-in astronaut) and a cartoon made from it, speaks the test
sentence and writes ``contact_<name>.png``: a grid of frames across the sentence, each
labelled with its time and mouth opening, and a row of mouth close-ups.
The cartoon needs the face venv (scripts/setup_face.sh) for its preparation.
``--video`` also writes ``talking_<name>.mp4`` (frames + the sentence's audio) to watch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def render_sentence(engine, avatar_dir, audio: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Frames and mouth openings for ``audio`` with half a second of silence either side."""
    sess = engine.open_session(avatar_dir)
    pad = np.zeros(8000, np.float32)
    audio = np.concatenate([pad, audio, pad])
    frames, opens = [], []
    for i in range(0, len(audio) - 639, 640):
        x = audio[i:i + 640]
        frames.append(sess.generate(x, speaking=bool(np.abs(x).max() > 1e-4))[0])
        opens.append(sess.state.open)
    return frames, opens


def contact_sheet(frames: list[np.ndarray], opens: list[float], mouth_box, fps: int, cols: int = 8,
                  rows: int = 3) -> np.ndarray:
    """A grid of evenly spaced frames plus a strip of mouth close-ups, as one RGB image."""
    n = len(frames)
    idx = np.linspace(int(0.4 * fps), n - 1 - int(0.4 * fps), cols * rows).astype(int)
    tiles = []
    for i in idx:
        t = cv2.resize(frames[i], (192, 192), interpolation=cv2.INTER_AREA)
        cv2.putText(t, f"{i / fps:.2f}s o={opens[i]:.2f}", (4, 186), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(t)
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(rows)], 0)
    ys, xs = mouth_box.sl
    best = idx[np.argsort([-opens[i] for i in idx])[:cols // 2]]
    picks = sorted(set(best.tolist()) | set(idx[:cols - len(best)].tolist()))[:cols]
    close = [cv2.resize(frames[i][ys, xs], (192, 160), interpolation=cv2.INTER_CUBIC) for i in picks]
    strip = np.concatenate(close + [np.zeros((160, 192, 3), np.uint8)] * (cols - len(close)), 1)
    return np.concatenate([grid, strip], 0)


def write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray, fps: int, sample_rate: int = 16000) -> None:
    """Write frames and their audio (already padded like the frames) as an H.264/AAC mp4 (needs PyAV)."""
    import av

    with av.open(str(path), "w") as box:
        v = box.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = box.add_stream("aac", rate=sample_rate)
        a.layout = "mono"
        for f in frames:
            box.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(v.encode())
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for i in range(0, len(pcm), 1024):
            af = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="s16", layout="mono")
            af.sample_rate = sample_rate
            box.mux(a.encode(af))
        box.mux(a.encode())


def main(argv: list[str] | None = None) -> int:
    """Write contact sheets for the photo and the cartoon portrait."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/portrait")
    ap.add_argument("--video", action="store_true", help="also write talking_<name>.mp4 with the audio (PyAV)")
    args = ap.parse_args(argv)
    from . import create_engine, prepare, samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = create_engine(seed=3)
    audio = samples.speech()
    cartoon_dir = out / "avatar_cartoon"
    prepare(samples.cartoon(), cartoon_dir)
    for name, avatar in (("photo", None), ("cartoon", cartoon_dir)):
        frames, opens = render_sentence(engine, avatar, audio)
        sheet = contact_sheet(frames, opens, engine.rig(avatar).mouth.box, engine.info.fps)
        path = out / f"contact_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"wrote {path} ({len(frames)} frames)")
        if args.video:
            pad = np.zeros(8000, np.float32)
            clip = out / f"talking_{name}.mp4"
            write_video(clip, frames, np.concatenate([pad, audio, pad]), engine.info.fps)
            print(f"wrote {clip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
