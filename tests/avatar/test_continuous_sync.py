"""The avatar's synchroniser keeps the audio track running: silence between answers, never ahead of a word."""

from __future__ import annotations

import numpy as np
from livekit import rtc

from avatar.generator import Silence
from avatar.worker import ContinuousSync

RATE, SPF = 16000, 640  # 25 fps


def frame(level: int) -> rtc.AudioFrame:
    return rtc.AudioFrame(np.full(SPF, level, np.int16).tobytes(), RATE, 1, SPF)


async def test_silence_fills_the_source_and_the_first_word_does_not_wait_behind_it() -> None:
    audio = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    video = rtc.VideoSource(16, 16)
    sync = ContinuousSync(audio_source=audio, video_source=video, video_fps=25, video_queue_size_ms=100)
    try:
        for _ in range(6):  # the idle face: silence reaches the source, as speech would
            await sync.push(Silence(frame(0)))
        assert audio.queued_duration > 0.05
        await sync.push(frame(3000))  # the answer's first word: the queued silence goes, the word plays next
        assert audio.queued_duration <= 0.041
        await sync.push(frame(3000))
        await sync.push(Silence(frame(0)))  # a pause inside the answer: queued after the words, not instead
        assert audio.queued_duration > 0.1
        await sync.push(frame(3000))  # words are still queued ahead of that silence: nothing is dropped
        assert audio.queued_duration > 0.1
    finally:
        await sync.aclose()
        await audio.aclose()
        await video.aclose()
