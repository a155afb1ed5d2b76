"""Text-to-speech with a local Piper voice (ONNX), synthesised off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

logger = logging.getLogger("agent.tts")


class PiperTTS(tts.TTS):
    """Piper as a chunked ``tts.TTS``: each sentence is synthesised in a worker thread and streamed out."""

    def __init__(self, voice_path: Path, *, use_cuda: bool = False) -> None:
        from piper import PiperVoice

        t0 = time.perf_counter()
        self._voice = PiperVoice.load(str(voice_path), use_cuda=use_cuda)
        sample_rate = self._voice.config.sample_rate
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._voice_path = Path(voice_path)
        logger.info("piper voice %s loaded in %.2f s", self._voice_path.name, time.perf_counter() - t0)

    @property
    def model(self) -> str:
        return self._voice_path.stem

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _PiperStream(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _PiperStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        piper: PiperTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=piper.sample_rate, num_channels=1, mime_type="audio/pcm"
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def _work() -> None:
            # Piper yields one chunk per sentence: hand each over as soon as it exists.
            try:
                for chunk in piper._voice.synthesize(self._input_text):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk.audio_int16_bytes)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        fut = loop.run_in_executor(piper._pool, _work)
        while (data := await queue.get()) is not None:
            output_emitter.push(data)
        await fut  # surface synthesis errors
        output_emitter.flush()
