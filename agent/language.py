"""The caller's language: the voice for it (Piper for English, the Mandarin voice of
:mod:`agent.zh_tts` or espeak-ng for Chinese) and what the recogniser's Chinese becomes.

:class:`BilingualTTS` picks the voice per sentence from the text itself, so an
answer in Chinese is spoken by the Mandarin voice and one in English by Piper,
whatever language the previous turn was in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import re
import shutil
import wave
import weakref
from typing import Any

import numpy as np
from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from dialogue.language import detect_language, tts_language

from .audio import Resampled

logger = logging.getLogger("agent.language")

# espeak-ng voice names per dialogue language. Mandarin is "cmn-latn-pinyin": in espeak-ng 1.51
# the "cmn" voice turns hanzi into tone-numbered pinyin and then reads that as English.
ESPEAK_VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us"}


def espeak_available() -> bool:
    """Whether the espeak-ng binary is installed (Debian package ``espeak-ng``)."""
    return shutil.which("espeak-ng") is not None


class EspeakTTS(tts.TTS):
    """espeak-ng as a chunked ``tts.TTS``; the binary runs as a subprocess, off the event loop."""

    def __init__(self, *, language: str = "zh", voice: str | None = None, speed_wpm: int = 160,
                 sample_rate: int = 22050) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)
        self._binary = binary
        self._voice = voice or ESPEAK_VOICES.get(language, language)
        self._speed = speed_wpm
        self._language = language

    @property
    def model(self) -> str:
        return self._voice

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _EspeakStream(tts=self, input_text=text, conn_options=conn_options)

    async def render(self, text: str) -> tuple[np.ndarray, int]:
        """int16 samples and their sample rate for ``text``."""
        if self._language == "zh":
            from .zh_text import normalize_zh

            text = normalize_zh(text)  # digits, amounts, dates and Latin letters as Chinese words
        proc = await asyncio.create_subprocess_exec(
            self._binary, "-v", self._voice, "-s", str(self._speed), "--stdout", "--", text,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
        with wave.open(io.BytesIO(out)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return pcm, rate


class _EspeakStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine: EspeakTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=engine.sample_rate, num_channels=1,
                                  mime_type="audio/pcm")
        pcm, rate = await engine.render(self._input_text)
        rs = Resampled(rate, engine.sample_rate)
        if data := rs.push(pcm) + rs.flush():
            output_emitter.push(data)
        output_emitter.flush()


class BilingualTTS(tts.TTS):
    """Routes each sentence to the voice of its language (``voices={"en": PiperTTS(...), "zh": EspeakTTS()}``).

    Audio comes out at the default voice's sample rate; other voices are resampled.
    """

    def __init__(self, voices: dict[str, tts.TTS], *, default: str = "en") -> None:
        if default not in voices:
            raise ValueError(f"no voice for the default language {default!r}")
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=voices[default].sample_rate,
                         num_channels=1)
        self.voices = voices
        self.default = default

    @property
    def model(self) -> str:
        return "+".join(f"{k}:{v.model}" for k, v in self.voices.items())

    @property
    def provider(self) -> str:
        return "bilingual"

    def voice_for(self, language: str) -> tts.TTS:
        """The voice for a language (the default voice when there is none)."""
        return self.voices.get(language) or self.voices[self.default]

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _BilingualStream(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        for v in self.voices.values():
            await v.aclose()


class _BilingualStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        router: BilingualTTS = self._tts  # type: ignore[assignment]
        voice = router.voice_for(tts_language(self._input_text, router.default))
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=router.sample_rate, num_channels=1,
                                  mime_type="audio/pcm")
        rs: Resampled | None = None
        async with voice.synthesize(self._input_text, conn_options=self._conn_options) as stream:
            async for ev in stream:
                frame = ev.frame
                pcm = np.frombuffer(frame.data, dtype=np.int16)
                if frame.num_channels > 1:
                    pcm = pcm.reshape(-1, frame.num_channels)[:, 0].copy()
                rs = rs or Resampled(frame.sample_rate, router.sample_rate)
                if data := rs.push(pcm):
                    output_emitter.push(data)
        if rs is not None and (data := rs.flush()):
            output_emitter.push(data)
        output_emitter.flush()


def build_bilingual_tts(english: tts.TTS | None = None, *, languages: tuple[str, ...] = ("en", "zh")) -> tts.TTS:
    """The worker's TTS: ``english`` (Piper) for en, espeak-ng for zh; espeak-ng for en too when no Piper voice."""
    voices: dict[str, tts.TTS] = {}
    sample_rate = english.sample_rate if english is not None else 22050
    voices["en"] = english or EspeakTTS(language="en", sample_rate=sample_rate)
    if "zh" in languages:
        voices["zh"] = EspeakTTS(language="zh", sample_rate=sample_rate)
    return BilingualTTS(voices, default="en")


# ------------------------------------------------------------------ recognition
_t2s = None


def to_simplified(text: str) -> str:
    """Traditional characters -> simplified (OpenCC's t2s tables): Whisper often writes Mandarin in traditional."""
    global _t2s
    if _t2s is None:
        from opencc import OpenCC  # opencc-python-reimplemented

        _t2s = OpenCC("t2s")
    return _t2s.convert(text)


@dataclasses.dataclass
class CallLanguage:
    """The language a call is in, kept across its utterances.

    The recogniser detects each utterance's language among the call's languages; a
    detection that differs from the call's language is taken only when the utterance
    makes the case for it (long enough, and its text written in the new language's script,
    two words or characters at least). Otherwise (a cough, a line noise, two garbled syllables) the
    utterance is decoded again in the call's language and the call stays where it is.
    """

    current: str | None = None
    min_switch_seconds: float = 0.8
    switches: int = 0
    kept: int = 0

    def convincing(self, text: str, language: str, seconds: float, truncated: bool) -> bool:
        # (``truncated`` is not held against it: the length bound also trips on a clear utterance)
        if seconds < self.min_switch_seconds:
            return False
        if language == "zh":
            return len(_HAN_CHARS.findall(text)) >= 2 and detect_language(text, default="") == "zh"
        words = _LATIN_WORDS.findall(text)
        return len(words) >= 2 and detect_language(text, default="") == language

    def accepts(self, text: str, language: str, seconds: float, truncated: bool) -> bool:
        """Whether the utterance's detected language stands (and the call follows it)."""
        if self.current is None or language == self.current:
            self.current = language
            return True
        if self.convincing(text, language, seconds, truncated):
            self.current = language
            self.switches += 1
            return True
        self.kept += 1
        return False


_HAN_CHARS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_WORDS = re.compile(r"[A-Za-z]+")
_calls: weakref.WeakKeyDictionary[object, CallLanguage] = weakref.WeakKeyDictionary()


def call_language(owner: object) -> CallLanguage:
    """The :class:`CallLanguage` of a call's recogniser (one per ``WhisperSTT``, that is per call)."""
    state = _calls.get(owner)
    if state is None:
        state = _calls[owner] = CallLanguage()
    return state


async def settle_transcript(stt_: Any, audio: np.ndarray, res: Any, forced: str | None = None) -> Any:
    """The hook after a call's utterance is decoded: keep the call's language, write Chinese simplified.

    ``stt_`` is the call's ``WhisperSTT`` (its ``engine`` decodes again when the call keeps
    its language), ``res`` the engine's ``Transcript``; ``forced``: a language the call was
    given (no detection, nothing to keep).
    """
    if not forced and res.text:
        state = call_language(stt_)
        seconds = len(audio) / 16000
        if not state.accepts(res.text, res.language, seconds, res.truncated):
            loop = asyncio.get_running_loop()
            again = await loop.run_in_executor(stt_.engine.pool, stt_.engine.transcribe, audio, state.current, None)
            logger.info("kept the call's language %s for %r (detected %s); heard %r", state.current, res.text,
                        res.language, again.text)
            res = dataclasses.replace(again, seconds=res.seconds + again.seconds)
    if res.language == "zh":
        res = dataclasses.replace(res, text=to_simplified(res.text))
    return res
