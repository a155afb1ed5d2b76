"""Speech-to-text with Whisper (local CTranslate2 model, int8 on CPU), sized to the utterance.

The session's VAD cuts utterances; each one is recognised as a batch. Whisper is
trained on 30 s windows and faster-whisper always pads to 30 s before encoding, so a
2 s question costs as much as 30 s of audio. CTranslate2's encoder also accepts a
shorter log-mel input: we encode the utterance plus ``tail_pad`` seconds of silence
(``window="utterance"``), which is 3-5x faster on a CPU. Two safeguards keep that
honest: the decoded tokens are bounded by the audio's duration, and a decode that loops
(the same phrase again and again, a known failure of short windows) is cut back to its
first copy. Language detection reuses the encoder output (the audio is encoded once)
and picks among the call's languages only.

One model serves every call of the worker process; decodes run one at a time in a
dedicated thread (two at once would only fight for the same cores).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr

from .language import settle_transcript  # noqa: E402  (mandarin hook, agent/language.py)
from .metrics import SPEECH_FAILURES

logger = logging.getLogger("agent.stt")

SAMPLE_RATE = 16000
HOP = 160  # samples per log-mel frame
MAX_FRAMES = 3000  # Whisper's 30 s window


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    seconds: float  # compute time
    truncated: bool  # the decode hit its length bound or was cut back from a loop


def trim_repetition(tokens: list[int], *, min_period: int = 4, short_repeats: int = 4) -> tuple[list[int], bool]:
    """Cut a decoding loop back to its first copy, until nothing repeats (see :func:`_trim_once`)."""
    cut = False
    while True:
        tokens, again = _trim_once(tokens, min_period=min_period, short_repeats=short_repeats)
        if not again:
            return tokens, cut
        cut = True


def _trim_once(tokens: list[int], *, min_period: int, short_repeats: int) -> tuple[list[int], bool]:
    """Cut a decoding loop back to its first copy.

    A decode that starts its text over ("A B C D. A B C") is cut where it starts again.
    A phrase of ``min_period`` or more tokens that follows itself at once is a loop
    (people rarely say four words twice in a row); shorter units must repeat
    ``short_repeats`` times ("no no" stays, "ha ha ha ha ha" does not).
    Returns the kept tokens and whether anything was cut.
    """
    n = len(tokens)
    # the whole text said twice ("Hi. Hi."): a unit of two tokens or more, exactly doubled
    if n >= 4 and n % 2 == 0 and tokens[: n // 2] == tokens[n // 2:]:
        return tokens[: n // 2], True
    # the text starting over (often cut short by the length bound): "A B C D. A B C"
    for p in range(min_period, n - min_period + 1):
        if tokens[p:] == tokens[: n - p] and n - p >= min_period:
            return tokens[:p], True
    for start in range(n):
        for period in range(1, (n - start) // 2 + 1):
            need = 2 if period >= min_period else short_repeats
            if start + period * need > n:
                continue
            unit = tokens[start : start + period]
            reps = 1
            while tokens[start + reps * period : start + (reps + 1) * period] == unit:
                reps += 1
            if reps >= need:
                return tokens[: start + period], True
    return tokens, False


class WhisperEngine:
    """The loaded model and its decode thread, shared by every call of the process."""

    def __init__(
        self,
        model_dir: Path,
        *,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        languages: tuple[str, ...] = (),
        beam_size: int = 1,
        window: Literal["utterance", "full"] = "utterance",
        tail_pad: float = 1.0,
        min_window: float = 2.0,
        max_tokens_per_second: float = 12.0,
    ) -> None:
        from faster_whisper import WhisperModel

        if window not in ("utterance", "full"):
            raise ValueError(f"window must be 'utterance' or 'full', not {window!r}")
        t0 = time.perf_counter()
        self._model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
        logger.info("whisper loaded from %s in %.2f s (window=%s)", model_dir, time.perf_counter() - t0, window)
        self._languages = tuple(languages)
        self._beam = beam_size
        self._window = window
        self._tail_pad = tail_pad
        self._min_window = min_window  # a word or two alone in 1.4 s was misheard ("Hi" -> "Bye")
        self._tokens_per_second = max_tokens_per_second
        # one at a time: two decodes would only fight for the same cores
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self.model_dir = Path(model_dir)

    # ------------------------------------------------------------- decoding
    def _pick_language(self, encoded: object, allowed: tuple[str, ...]) -> str:
        probs = self._model.model.detect_language(encoded)[0]  # [(token "<|en|>", p), ...] best first
        ranked = [(tok[2:-2], p) for tok, p in probs]
        if allowed:
            for lang, _p in ranked:
                if lang in allowed:
                    return lang
        return ranked[0][0]

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   languages: tuple[str, ...] | None = None) -> Transcript:
        """Recognise float32 mono 16 kHz ``audio`` (blocking; call it from a worker thread)."""
        from faster_whisper.tokenizer import Tokenizer

        t0 = time.perf_counter()
        m = self._model
        dur = len(audio) / SAMPLE_RATE
        if self._window == "full":
            padded = np.concatenate([audio, np.zeros(MAX_FRAMES * HOP, np.float32)])
            feats = m.feature_extractor(padded, padding=0)[:, :MAX_FRAMES]
            if feats.shape[1] < MAX_FRAMES:
                feats = np.pad(feats, ((0, 0), (0, MAX_FRAMES - feats.shape[1])))
        else:
            # at least `tail_pad` of silence after the speech, and a window of at least `min_window`
            pad = max(self._tail_pad, self._min_window - dur)
            padded = np.concatenate([audio, np.zeros(int(pad * SAMPLE_RATE), np.float32)])
            feats = m.feature_extractor(padded, padding=0)
            n = min(MAX_FRAMES, feats.shape[1] - feats.shape[1] % 2)  # the encoder's stride is 2
            feats = feats[:, :n]
        encoded = m.encode(feats)
        allowed = self._languages if languages is None else languages
        lang = language or (self._pick_language(encoded, allowed) if m.model.is_multilingual else "en")
        tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=lang)
        prompt = m.get_prompt(tok, [], without_timestamps=True)
        budget = int(self._tokens_per_second * dur) + 10
        res = m.model.generate(
            encoded, [prompt], beam_size=self._beam, max_length=min(448, len(prompt) + budget),
            suppress_blank=True, suppress_tokens=[-1], return_scores=False,
        )[0]
        tokens = [t for t in res.sequences_ids[0] if t < tok.eot]
        kept, cut = trim_repetition(tokens)
        hit_bound = len(tokens) >= budget - 1
        text = tok.decode(kept).strip()
        return Transcript(text, lang, time.perf_counter() - t0, cut or hit_bound)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# What a listener says over a speaker without taking the turn (English and Mandarin).
BACKCHANNELS = frozenset({
    "hmm", "hm", "mm", "mhm", "mmhmm", "uhhuh", "uh", "um", "ah", "oh", "okay", "ok", "yeah", "yes", "yep", "right",
    "sure", "嗯", "哦", "啊", "对", "好", "好的", "是", "是的", "嗯嗯",
})


def is_backchannel(text: str) -> bool:
    """A short acknowledgement, or a noise transcribed as one ("Hmm.", "Okay", "嗯")."""
    words = "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()
    return 0 < len(words) <= 2 and all(w in BACKCHANNELS for w in words)


def voiced_seconds(audio: np.ndarray, *, hop: int = 160) -> float:
    """Seconds of ``audio`` (float32, 16 kHz) louder than a tenth of its loudest 10 ms (and than -50 dBFS)."""
    n = len(audio) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    return float(np.count_nonzero(rms > max(0.1 * rms.max(), 10 ** (-50 / 20)))) * hop / SAMPLE_RATE


class WhisperSTT(stt.STT):
    """One call's ``stt.STT`` over the shared :class:`WhisperEngine` (its events stay with its call).

    ``ignore_backchannels`` (set by the worker to "is the agent speaking?") makes a short
    acknowledgement over the agent's answer ("hmm", "okay") or a sound with less than
    ``min_voiced`` seconds of voice (a cough) an empty transcript, so the framework does
    not take it for a new turn and cut the answer off.
    """

    def __init__(self, engine: WhisperEngine | Path, *, language: str = "", languages: tuple[str, ...] | None = None,
                 **engine_kwargs: object) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.engine = engine if isinstance(engine, WhisperEngine) else WhisperEngine(Path(engine), **engine_kwargs)  # type: ignore[arg-type]
        self._language = language or None
        self._languages = languages
        self.ignore_backchannels: Callable[[], bool] | None = None
        self.min_voiced = 0.25
        # called when the engine raises on an utterance (the call asks the caller to say it again);
        # the utterance then gives an empty transcript, so the call's recognition stream lives on
        self.on_failure: Callable[[], None] | None = None

    @property
    def model(self) -> str:
        return self.engine.model_dir.name

    @property
    def provider(self) -> str:
        return "faster-whisper"

    # ------------------------------------------------------------ framework
    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        if frame.sample_rate != SAMPLE_RATE or frame.num_channels != 1:
            resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE, num_channels=frame.num_channels)
            frames = resampler.push(frame) + resampler.flush()
            frame = rtc.combine_audio_frames(frames)
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
        audio = pcm.astype(np.float32) / 32768.0
        lang = (language if isinstance(language, str) and language else None) or self._language
        loop = asyncio.get_running_loop()
        try:
            res = await loop.run_in_executor(self.engine.pool, self.engine.transcribe, audio, lang, self._languages)
            res = await settle_transcript(self, audio, res, lang)  # mandarin: the call's language kept; zh simplified
        except Exception:
            # the framework would end this call's recognition for good: one bad utterance must not deafen the call
            logger.exception("recognition failed on %.2f s of audio: the caller is asked to say it again",
                             len(audio) / SAMPLE_RATE)
            SPEECH_FAILURES.labels(stage="stt").inc()
            if self.on_failure is not None and voiced_seconds(audio) >= self.min_voiced:
                self.on_failure()
            return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                                   alternatives=[stt.SpeechData(language=lang or "", text="")])
        logger.info("transcribed %.2f s of audio in %.2f s [%s]%s: %r", len(audio) / SAMPLE_RATE, res.seconds,
                    res.language, " (loop cut)" if res.truncated else "", res.text,
                    extra={"asr_seconds": round(res.seconds, 3), "audio_seconds": round(len(audio) / SAMPLE_RATE, 2)})
        text = res.text
        if text and self.ignore_backchannels is not None and self.ignore_backchannels():
            voiced = voiced_seconds(audio)
            if is_backchannel(text) or voiced < self.min_voiced:
                logger.info("ignored %r (%.2f s voiced) said over the agent's answer: a backchannel, not a turn",
                            text, voiced)
                text = ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=res.language, text=text)],
        )

    async def aclose(self) -> None:
        # the engine is shared by every call of the process: closing one call must not stop it
        return None
