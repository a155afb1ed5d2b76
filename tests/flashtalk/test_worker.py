"""The engine inside the avatar worker's frame generator (no LiveKit server needed)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from avatar.generator import EngineVideoGenerator

RATE = 16000
SPF = 640


async def test_worker_generator_drives_flashtalk(tiny_engine):
    session = tiny_engine.open_session(None)
    render_threads: set[str] = set()
    real_generate = session.generate

    def generate(audio, *, speaking):
        render_threads.add(threading.current_thread().name)
        return real_generate(audio, speaking=speaking)

    session.generate = generate  # type: ignore[method-assign]
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
    gen = EngineVideoGenerator(session, executor=executor)

    # 1.5 chunks of "speech": the tail is padded with silence, not dropped
    speech = (8000 * np.sin(np.arange(int(1.5 * 28 * SPF)) / 7.0)).astype(np.int16)
    await gen.push_audio(rtc.AudioFrame(speech.tobytes(), RATE, 1, len(speech)))
    await gen.push_audio(AudioSegmentEnd())

    videos, audio_samples, ended = 0, 0, False
    speech_frames_at_end = None
    async for item in gen:
        if isinstance(item, rtc.VideoFrame):
            videos += 1
            assert (item.width, item.height) == (64, 64)
        elif isinstance(item, rtc.AudioFrame):
            audio_samples += item.samples_per_channel
        elif isinstance(item, AudioSegmentEnd):
            ended = True
            speech_frames_at_end = videos
        if (
            ended and videos >= speech_frames_at_end + 28
        ):  # one idle chunk after the speech
            break
    await gen.aclose()
    executor.shutdown(wait=True)

    assert speech_frames_at_end == 56  # 2 chunks of 28 frames for 1.5 chunks of audio
    assert audio_samples == 56 * SPF  # one audio frame per video frame, in step
    assert render_threads and all(
        name.startswith("render") for name in render_threads
    )  # off the event loop


async def test_worker_interrupt_returns_to_idle(tiny_engine):
    session = tiny_engine.open_session(None)
    stream = session.stream
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
    gen = EngineVideoGenerator(session, executor=executor)
    speech = (8000 * np.sin(np.arange(3 * 28 * SPF) / 5.0)).astype(np.int16)
    await gen.push_audio(rtc.AudioFrame(speech.tobytes(), RATE, 1, len(speech)))

    frames = 0
    async for item in gen:
        if isinstance(item, rtc.VideoFrame):
            frames += 1
            if frames == 10:
                gen.interrupt()  # barge-in in the middle of the first chunk's frames
            if frames >= 10 + 28:
                break
    await gen.aclose()
    executor.shutdown(wait=True)
    # the engine was told: no pending audio, and the speech left the audio context (only silence since)
    assert not len(stream.pending) and not stream.ring.any()
    assert (
        stream.chunks_done >= 2
    )  # the interrupted chunk, then idle chunks continuing from its motion
