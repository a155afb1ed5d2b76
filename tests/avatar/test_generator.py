"""The avatar's VideoGenerator: chunking, A/V interleaving, segment ends, interruption."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from avatar.engines import create_engine
from avatar.engines.base import EngineInfo, EngineSession
from avatar.generator import EngineVideoGenerator

RATE = 16000


def tone_frame(ms: int = 100, amp: float = 0.4, rate: int = RATE) -> rtc.AudioFrame:
    n = rate * ms // 1000
    t = np.arange(n) / rate
    pcm = (amp * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), rate, 1, n)


class RecordingSession(EngineSession):
    """A real (trivial) engine session that records what it was asked to render."""

    def __init__(self, chunk_frames: int = 1, sample_rate: int = RATE) -> None:
        super().__init__(EngineInfo("rec", 64, 48, 25, sample_rate=sample_rate, chunk_frames=chunk_frames))
        self.calls: list[tuple[float, bool]] = []
        self.interrupts = 0

    def generate(self, audio: np.ndarray, *, speaking: bool) -> list[np.ndarray]:
        assert audio.dtype == np.float32 and audio.size == self.info.samples_per_chunk
        self.calls.append((float(np.abs(audio).max()), speaking))
        level = int(min(255, 255 * float(np.abs(audio).max())))
        return [np.full((48, 64, 3), level, np.uint8) for _ in range(self.info.chunk_frames)]

    def interrupt(self) -> None:
        self.interrupts += 1


async def collect(gen: EngineVideoGenerator, n_items: int, timeout: float = 10.0) -> list:
    out: list = []

    async def _run() -> None:
        async for item in gen:
            out.append(item)
            if len(out) >= n_items:
                return

    await asyncio.wait_for(_run(), timeout)
    return out


async def test_speech_is_interleaved_frame_by_frame_and_segment_ends():
    sess = RecordingSession()
    gen = EngineVideoGenerator(sess)
    await gen.push_audio(tone_frame(100))
    await gen.push_audio(tone_frame(30))  # 130 ms: 3 full frames + a 10 ms tail padded with silence
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 9)
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["AudioFrame", "VideoFrame"] * 4 + ["AudioSegmentEnd"]  # a frame's audio, then the frame
    audio = [i for i in items if isinstance(i, rtc.AudioFrame)]
    assert all(a.samples_per_channel == 640 for a in audio)  # one video frame's worth each
    tail = np.frombuffer(audio[-1].data, np.int16)
    assert np.abs(tail[:160]).max() > 1000 and np.abs(tail[160:]).max() == 0  # padded, not dropped
    assert all(speaking for _, speaking in sess.calls[:4])
    await gen.aclose()


async def test_idle_frames_are_video_only_and_silent():
    sess = RecordingSession()
    gen = EngineVideoGenerator(sess)
    items = await collect(gen, 5)
    assert all(isinstance(i, rtc.VideoFrame) for i in items)
    assert all(not speaking and level == 0 for level, speaking in sess.calls)
    await gen.aclose()


async def test_chunked_engine_gets_whole_chunks_and_emits_matching_audio():
    sess = RecordingSession(chunk_frames=28)
    gen = EngineVideoGenerator(sess)
    for _ in range(12):  # 1.2 s: one full chunk (1.12 s) and a tail
        await gen.push_audio(tone_frame(100))
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 2 * 56 + 1)
    assert isinstance(items[-1], AudioSegmentEnd)
    n_audio = sum(isinstance(i, rtc.AudioFrame) for i in items)
    n_video = sum(isinstance(i, rtc.VideoFrame) for i in items)
    assert n_audio == n_video == 56
    await gen.aclose()


async def test_an_engine_at_another_rate_gets_its_own_rate_and_the_room_hears_it():
    """The agent sends 16 kHz; an engine that works at 24 kHz gets 24 kHz chunks of exactly its size
    (RecordingSession asserts it), resampled once at the input, and the room gets those samples."""
    sess = RecordingSession(chunk_frames=3, sample_rate=24000)
    gen = EngineVideoGenerator(sess)
    for _ in range(3):  # 300 ms at 16 kHz: 7200 samples at 24 kHz, 2.5 chunks of 2880
        await gen.push_audio(tone_frame(100))
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 19)
    audio = [i for i in items if isinstance(i, rtc.AudioFrame)]
    assert {a.sample_rate for a in audio} == {24000} and {a.samples_per_channel for a in audio} == {960}
    assert len(audio) == 9 and isinstance(items[-1], AudioSegmentEnd)  # 3 chunks, the last one padded
    assert sum(1 for _, speaking in sess.calls if speaking) == 3
    await gen.aclose()


async def test_a_segment_of_whole_chunks_ends_with_its_last_chunk_and_an_empty_one_still_ends():
    sess = RecordingSession(chunk_frames=2)
    gen = EngineVideoGenerator(sess)
    for _ in range(4):  # 400 ms at 25 fps: 10 frames, 5 whole chunks of 2
        await gen.push_audio(tone_frame(100))
    await gen.push_audio(AudioSegmentEnd())
    await gen.push_audio(AudioSegmentEnd())  # an answer that said nothing
    items = await collect(gen, 10 * 2 + 1 + 2 * 2 + 1)
    ends = [k for k, i in enumerate(items) if isinstance(i, AudioSegmentEnd)]
    assert ends == [20, 25]  # right after the last of 10 frames, then after one silent chunk
    await gen.aclose()


async def test_speech_at_another_rate_is_resampled_without_seams():
    """The agent streams 10 ms frames at 48 kHz to an avatar that plays 16 kHz: one resampler over the
    segment, so the tone comes out whole (a resampler per frame leaves a seam every 10 ms)."""
    sess = RecordingSession()
    gen = EngineVideoGenerator(sess)
    src = 48000
    t = np.arange(src * 4 // 10) / src  # 400 ms of 220 Hz
    tone = (0.4 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    for i in range(0, len(tone), 480):
        await gen.push_audio(rtc.AudioFrame(tone[i:i + 480].tobytes(), src, 1, 480))
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 20)
    out = np.concatenate([np.frombuffer(a.data, np.int16) for a in items if isinstance(a, rtc.AudioFrame)])
    assert abs(len(out) - RATE * 4 // 10) <= 640  # the speech, to within a video frame
    body = out[800:5600].astype(np.float64)  # away from the resampler's start and the padded tail
    n = np.arange(len(body))
    basis = np.stack([np.sin(2 * np.pi * 220 * n / RATE), np.cos(2 * np.pi * 220 * n / RATE)], axis=1)
    fit, *_ = np.linalg.lstsq(basis, body, rcond=None)
    residual = np.sqrt(np.mean((body - basis @ fit) ** 2)) / np.sqrt(np.mean(body ** 2))
    assert residual < 0.005, f"the resampled tone is {100 * residual:.1f} % off a clean 220 Hz tone"
    await gen.aclose()


async def test_interrupt_drops_queued_speech_and_resets_the_engine():
    sess = RecordingSession()
    gen = EngineVideoGenerator(sess)
    for _ in range(20):  # 2 s of speech queued
        await gen.push_audio(tone_frame(100))
    first = await collect(gen, 4)
    assert any(isinstance(i, rtc.AudioFrame) for i in first)
    gen.interrupt()
    # The stream that was cleared sends its end marker late: it must not end anything.
    await gen.push_audio(AudioSegmentEnd())
    rest = await collect(gen, 10)
    assert not any(isinstance(i, (rtc.AudioFrame, AudioSegmentEnd)) for i in rest)
    assert sess.interrupts == 1
    # and the next answer plays normally
    await gen.push_audio(tone_frame(40))
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 40)
    assert any(isinstance(i, rtc.AudioFrame) for i in items)
    assert any(isinstance(i, AudioSegmentEnd) for i in items)
    await gen.aclose()


@pytest.mark.parametrize("engine", ["simple", "portrait"])
def test_cpu_engines_open_the_mouth_with_speech_and_close_it_after(engine):
    # head sway off: this compares the mouth region with the resting face pixel by pixel
    eng = create_engine(engine, **({"head_motion": 0.0, "seed": 1} if engine == "portrait" else {}))
    sess = eng.open_session()
    spf = eng.info.samples_per_frame
    t = np.arange(spf * 12) / 16000
    speech = (0.5 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    idle = [sess.generate(np.zeros(spf, np.float32), speaking=False)[0] for _ in range(3)]
    talk = [sess.generate(speech[i * spf : (i + 1) * spf], speaking=True)[0] for i in range(12)]
    sess.interrupt()
    after = [sess.generate(np.zeros(spf, np.float32), speaking=False)[0] for _ in range(6)]
    box = sess.mouth_box
    x, y, w, h = box

    def mouth_diff(f: np.ndarray) -> float:
        return float(np.abs(f[y : y + h, x : x + w].astype(np.float32) - idle[-1][y : y + h, x : x + w]).mean())

    assert max(mouth_diff(f) for f in talk) > 8.0  # the mouth visibly opened
    assert mouth_diff(after[-1]) < 3.0  # and closed again after the interruption
    assert talk[0].shape == (512, 512, 3) and talk[0].dtype == np.uint8


async def test_a_segment_whose_last_whole_chunk_is_already_rendering_still_ends():
    """TTS slower than playback: every chunk of the answer was taken to render before its end marker
    came; the end goes out after a chunk of silence (nothing to mark in the queue)."""
    sess = RecordingSession(chunk_frames=2)
    gen = EngineVideoGenerator(sess)
    stream = gen.__aiter__()
    await gen.push_audio(tone_frame(80))  # exactly one chunk (2 frames of 40 ms)
    got = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(4)]  # its 2 frames and 2 audio slices
    assert sum(isinstance(i, rtc.AudioFrame) for i in got) == 2
    await gen.push_audio(AudioSegmentEnd())
    rest = []
    while not rest or not isinstance(rest[-1], AudioSegmentEnd):
        rest.append(await asyncio.wait_for(stream.__anext__(), 5))
    silent = [i for i in rest if isinstance(i, rtc.AudioFrame)]
    assert len(silent) == 2 and not any(np.frombuffer(a.data, np.int16).any() for a in silent)
    await gen.aclose()


@pytest.mark.parametrize("end_first", [True, False])
async def test_an_interruption_drops_what_came_before_it_whichever_side_of_it_the_stale_end_lands(end_first):
    """The cleared stream's end marker may reach the generator before or after the interruption;
    either way nothing of that answer is shown, no end goes out for it, and the next answer plays."""
    sess = RecordingSession()
    gen = EngineVideoGenerator(sess)
    for _ in range(10):
        await gen.push_audio(tone_frame(100))
    if end_first:
        await gen.push_audio(AudioSegmentEnd())
    gen.interrupt()
    if not end_first:
        await gen.push_audio(AudioSegmentEnd())
    rest = await collect(gen, 10)
    assert not any(isinstance(i, (rtc.AudioFrame, AudioSegmentEnd)) for i in rest)
    assert sess.interrupts == 1 and all(not speaking for _, speaking in sess.calls)
    await gen.push_audio(tone_frame(40))
    await gen.push_audio(AudioSegmentEnd())
    items = await collect(gen, 40)
    assert sum(isinstance(i, rtc.AudioFrame) for i in items) == 1 and any(isinstance(i, AudioSegmentEnd) for i in items)
    await gen.aclose()


async def test_an_interruption_during_a_render_drops_its_frames_and_the_engine_restarts_from_idle():
    class SlowSession(RecordingSession):
        def generate(self, audio, *, speaking):
            import time

            time.sleep(0.05)
            return super().generate(audio, speaking=speaking)

    sess = SlowSession()
    gen = EngineVideoGenerator(sess)
    for _ in range(20):
        await gen.push_audio(tone_frame(100))
    stream = gen.__aiter__()
    first = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(2)]  # speech plays, the next chunk renders
    assert [type(i) for i in first] == [rtc.AudioFrame, rtc.VideoFrame]  # a frame's voice, then the frame
    gen.interrupt()  # while that render runs in its thread
    after = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(7)]
    assert not any(isinstance(i, (rtc.AudioFrame, AudioSegmentEnd)) for i in after), after
    assert all(np.frombuffer(f.data, np.uint8).max() == 0 for f in after)  # idle (silent) frames only
    assert sess.interrupts == 1
    await gen.aclose()
