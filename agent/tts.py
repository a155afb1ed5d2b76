"""Text-to-speech with a local Piper voice (ONNX), synthesised off the event loop.

:class:`PiperVoiceModel` is the loaded voice and its synthesis thread, shared by every
call of the process; :class:`PiperTTS` is one call's ``tts.TTS`` over it.
:class:`ClauseTokenizer` lets the first clause of an answer go to the voice as soon as it
exists ("Our branches open at nine," is spoken while the rest is still synthesising).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from livekit.agents import tokenize, tts, utils
from livekit.agents.tokenize import token_stream
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

logger = logging.getLogger("agent.tts")


@functools.lru_cache(maxsize=4)
def _piper_voice(voice_path: Path):  # noqa: ANN202
    from piper import PiperVoice

    return PiperVoice.load(str(voice_path))


def speak(text: str, voice_path: Path, rate: int = 16000, *, steady: bool = False) -> np.ndarray:
    """``text`` in a local Piper voice (loaded once per path), int16 mono at ``rate``: speech for the
    benchmarks' callers and for avatar previews, not for calls (those stream through :class:`PiperTTS`).

    Piper draws its prosody at random, so each call sounds a little different (and a rare draw is
    hard to understand). ``steady`` turns the noise off: the same text gives the same samples, which
    is what a test's caller needs to fail the same way on every run.
    """
    from math import gcd

    from piper import SynthesisConfig
    from scipy.signal import resample_poly

    voice = _piper_voice(Path(voice_path))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if steady else None
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])
    g = gcd(voice.config.sample_rate, rate)
    audio = resample_poly(audio, rate // g, voice.config.sample_rate // g)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


class PiperVoiceModel:
    """A loaded Piper voice and its synthesis thread."""

    def __init__(self, voice_path: Path, *, threads: int = 2) -> None:
        import json

        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # No busy-waiting between runs: its spinning threads would steal the cores from
        # Whisper and the other calls (measured: first audio 0.4-0.8 s with spinning, 0.2-0.3 s without)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        config = PiperConfig.from_dict(json.loads(Path(f"{voice_path}.json").read_text(encoding="utf-8")))
        session = ort.InferenceSession(str(voice_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(config=config, session=session)
        self.sample_rate: int = self.voice.config.sample_rate
        self.path = Path(voice_path)
        # one synthesis at a time: a sentence takes ~50 ms, two at once only share the cores
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        logger.info("piper voice %s loaded in %.2f s", self.path.name, time.perf_counter() - t0)


class PiperTTS(tts.TTS):
    """Piper as a chunked ``tts.TTS``: each sentence is synthesised in the voice's thread and streamed out."""

    def __init__(self, voice: PiperVoiceModel | Path) -> None:
        self.voice = voice if isinstance(voice, PiperVoiceModel) else PiperVoiceModel(Path(voice))
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=self.voice.sample_rate,
                         num_channels=1)

    @property
    def model(self) -> str:
        return self.voice.path.stem

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _PiperStream(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        return None  # the voice is shared by every call of the process


class _PiperStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        model = self._tts.voice  # type: ignore[attr-defined]
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=model.sample_rate, num_channels=1, mime_type="audio/pcm"
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        t_ask = time.perf_counter()

        def _work() -> None:
            # Piper yields one chunk per sentence: hand each over as soon as it exists.
            t0 = time.perf_counter()
            try:
                for i, chunk in enumerate(model.voice.synthesize(self._input_text)):
                    if i == 0:
                        logger.debug("piper: %d chars, waited %.0f ms, first audio after %.0f ms", len(self._input_text),
                                     1000 * (t0 - t_ask), 1000 * (time.perf_counter() - t0))
                    loop.call_soon_threadsafe(queue.put_nowait, chunk.audio_int16_bytes)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        fut = loop.run_in_executor(model.pool, _work)
        while (data := await queue.get()) is not None:
            output_emitter.push(data)
        await fut  # surface synthesis errors
        output_emitter.flush()


# A clause ends at a comma, semicolon, colon or dash followed by a space (or at their
# full-width Chinese forms, which need no space).
_CLAUSE_END = re.compile(r"[,;:\u2014](?=\s)|[\uff0c\u3001\uff1b\uff1a]")


_SENTENCES = tokenize.blingfire.SentenceTokenizer(min_sentence_len=1)
_SENTENCES_MERGED = tokenize.blingfire.SentenceTokenizer(min_sentence_len=20)


def split_first_clause(text: str, *, min_len: int = 12, max_len: int = 80) -> list[str]:
    """Sentences of ``text``, the first one cut at its first clause end.

    Only the first piece is cut short, to start speaking sooner; the rest are whole
    sentences so the voice keeps its sentence melody.
    """
    sentences = _SENTENCES.tokenize(text)
    if not sentences:
        return []
    head = sentences[0]
    for m in _CLAUSE_END.finditer(head):
        cut = m.end()
        if min_len <= len(head[:cut].strip()) <= max_len and head[cut:].strip():
            return [head[:cut].strip(), head[cut:].strip(), *sentences[1:]]
    return sentences


class ClauseTokenizer(tokenize.SentenceTokenizer):
    """Sentence tokenizer whose stream emits the answer's first clause on its own."""

    def tokenize(self, text: str, *, language: str | None = None) -> list[str]:
        return split_first_clause(text)

    def stream(self, *, language: str | None = None) -> tokenize.SentenceStream:
        first = True

        def _tok(text: str) -> list[str]:
            nonlocal first
            if first:
                pieces = split_first_clause(text)
                if len(pieces) > 1:
                    first = False  # the stream emits every piece but the last
                return pieces
            return _SENTENCES_MERGED.tokenize(text)

        return token_stream.BufferedSentenceStream(tokenizer=_tok, min_token_len=1, min_ctx_len=10)
