"""Speech-to-text with faster-whisper (local CTranslate2 model, int8 on CPU).

Batch recognition per utterance (the session's VAD cuts utterances); the model
runs in a dedicated thread so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr

logger = logging.getLogger("agent.stt")


class WhisperSTT(stt.STT):
    """faster-whisper as a non-streaming ``stt.STT``."""

    def __init__(
        self,
        model_dir: Path,
        *,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        language: str = "",
        beam_size: int = 1,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        from faster_whisper import WhisperModel

        t0 = time.perf_counter()
        self._model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
        logger.info("whisper loaded from %s in %.2f s", model_dir, time.perf_counter() - t0)
        self._language = language or None
        self._beam = beam_size
        # one at a time: two decodes would only fight for the same cores
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._model_dir = Path(model_dir)

    @property
    def model(self) -> str:
        return self._model_dir.name

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def _transcribe(self, audio: np.ndarray, language: str | None) -> tuple[str, str, float]:
        t0 = time.perf_counter()
        segments, info = self._model.transcribe(
            audio, language=language, beam_size=self._beam, vad_filter=False, condition_on_previous_text=False,
            without_timestamps=True,  # the agent needs the words, not their times: a little less decoding
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, info.language, time.perf_counter() - t0

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        if frame.sample_rate != 16000 or frame.num_channels != 1:
            resampler = rtc.AudioResampler(frame.sample_rate, 16000, num_channels=frame.num_channels)
            frames = resampler.push(frame) + resampler.flush()
            frame = rtc.combine_audio_frames(frames)
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
        audio = pcm.astype(np.float32) / 32768.0
        lang = (language if isinstance(language, str) and language else None) or self._language
        loop = asyncio.get_running_loop()
        text, detected, secs = await loop.run_in_executor(self._pool, self._transcribe, audio, lang)
        logger.info("transcribed %.2f s of audio in %.2f s [%s]: %r", len(audio) / 16000, secs, detected, text)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=detected, text=text)],
        )

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
