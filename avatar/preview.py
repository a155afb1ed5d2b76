"""A short clip of a prepared avatar saying a sentence, rendered by the call's own path.

    python -m avatar.preview ASSETS_DIR OUT.mp4 [--engine portrait] [--text "..."]

The admin renders one after preparing an avatar, so an operator sees the face move with
speech before any caller does. The speech goes through exactly what a call uses: the
engine's session over the prepared assets, driven by :class:`EngineVideoGenerator` (the
same chunking, resampling and speaking/idle poses), and the frames and audio it yields
are muxed as they come out (H.264 + AAC, the generator's own timeline).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from agent.tts import speak

from .engines import create_engine
from .generator import EngineVideoGenerator

PREVIEW_TEXT = {"en": "Hello, I am your digital assistant. How can I help you today?",
                "zh": "您好，我是您的数字助理。请问有什么可以帮您？"}
IDLE_TAIL_S = 0.6  # the face after the sentence: back to listening


@dataclass(frozen=True)
class Preview:
    path: Path
    seconds: float
    frames: int
    render_s: float
    mouth_box: tuple[int, int, int, int] | None = None  # where the engine says the mouth is (x, y, w, h)

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 2), "frames": self.frames, "render_s": round(self.render_s, 2),
                "mouth_box": list(self.mouth_box) if self.mouth_box else None}


async def _render(gen: EngineVideoGenerator, speech: np.ndarray, rate: int, fps: int,
                  tail_frames: int) -> tuple[list[rtc.VideoFrame], list[rtc.AudioFrame]]:
    most = int((len(speech) / rate + 5.0) * fps) + tail_frames  # an engine that never ends the sentence
    step = rate // 50  # 20 ms frames, as the agent's data stream sends them
    for i in range(0, len(speech), step):
        piece = np.ascontiguousarray(speech[i : i + step])
        await gen.push_audio(rtc.AudioFrame(piece.tobytes(), rate, 1, len(piece)))
    await gen.push_audio(AudioSegmentEnd())
    video: list[rtc.VideoFrame] = []
    audio: list[rtc.AudioFrame] = []
    ended_at: int | None = None
    async for item in gen:
        if isinstance(item, AudioSegmentEnd):
            ended_at = len(video)
        elif isinstance(item, rtc.VideoFrame):
            video.append(item)
        else:
            audio.append(item)
        if ended_at is not None and len(video) >= ended_at + tail_frames:
            break
        if len(video) > most:
            raise RuntimeError(f"the sentence did not end within {most} frames")
    return video, audio


def render_preview(engine: str, assets_dir: Path | None, out: Path, speech: np.ndarray, rate: int, *,
                   width: int = 512, height: int = 512, fps: int = 25, **engine_options) -> Preview:
    """Render ``speech`` (int16 mono at ``rate``) with the avatar prepared in ``assets_dir`` into ``out`` (MP4)."""
    import av

    if speech.ndim != 1 or speech.size == 0:
        raise ValueError("speech must be non-empty mono int16 samples")
    t0 = time.perf_counter()
    eng = create_engine(engine, width=width, height=height, fps=fps, **engine_options)
    session = eng.open_session(Path(assets_dir) if assets_dir else None)
    mouth_box = getattr(session, "mouth_box", None)
    gen = EngineVideoGenerator(session)

    async def run() -> tuple[list[rtc.VideoFrame], list[rtc.AudioFrame]]:
        try:
            return await _render(gen, speech, rate, fps, int(IDLE_TAIL_S * fps))
        finally:
            await gen.aclose()

    try:
        video, audio = asyncio.run(run())
    finally:
        eng.close()
    render_s = time.perf_counter() - t0
    if not video or not audio:
        raise RuntimeError(f"the {engine} engine rendered {len(video)} frames and {len(audio)} audio frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    info = eng.info
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as c:  # playable as it loads
        vs = c.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "26"})
        vs.width, vs.height, vs.pix_fmt = video[0].width, video[0].height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        as_ = c.add_stream("aac", rate=info.sample_rate)
        as_.layout = "mono"
        for i, f in enumerate(video):
            rgb = np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 3)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
        pos = 0  # the speech starts with the first frame: the generator yields each frame with its audio
        for a in audio:
            pcm = np.frombuffer(a.data, np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = a.sample_rate, pos
            pos += a.samples_per_channel
            for pkt in as_.encode(frame):
                c.mux(pkt)
        for pkt in as_.encode(None):
            c.mux(pkt)
    tmp.replace(out)
    return Preview(out, len(video) / fps, len(video), render_s,
                   tuple(int(v) for v in mouth_box) if mouth_box else None)


def main() -> None:
    from agent.settings import AgentSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("assets_dir")
    ap.add_argument("out")
    ap.add_argument("--engine", default="portrait")
    ap.add_argument("--text", default=PREVIEW_TEXT["en"])
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    s = AgentSettings()
    p = render_preview(args.engine, Path(args.assets_dir), Path(args.out), speak(args.text, s.model_path(s.piper_voice)),
                       16000, width=args.size, height=args.size)
    print(f"{p.path}: {p.seconds:.1f} s, {p.frames} frames, rendered in {p.render_s:.1f} s")


if __name__ == "__main__":
    main()
