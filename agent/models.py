"""The models of a call, loaded once per worker process and shared by all its calls.

Every call of the agent worker runs as a thread of one process (the framework's thread
job executor), so one Whisper, one Piper voice, one VAD network and one end-of-turn
model serve them all, and a new call starts without loading anything. Each heavy model
has exactly one compute thread: two callers' utterances queue for the one Whisper
instead of two Whispers fighting over two cores.

The framework wires events (metrics, errors) per session, so each call gets its own
light plugin objects (:meth:`SharedModels.for_call`) over the shared weights.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

from livekit.agents import tts as lk_tts
from livekit.plugins import silero

from .language import BilingualTTS, EspeakTTS
from .settings import AgentSettings, require
from .stt import WhisperEngine, WhisperSTT
from .tts import ClauseTokenizer, PiperTTS, PiperVoiceModel
from .turn import SmartTurnDetector, SmartTurnModel
from .vad import VoicedVAD
from .voices import ESPEAK
from .zh_tts import mandarin_voice

logger = logging.getLogger("agent.models")


@dataclass
class CallModels:
    """One call's plugin objects (cheap), over the process's shared weights."""

    vad: VoicedVAD
    stt: WhisperSTT
    tts: lk_tts.TTS
    turn_detector: SmartTurnDetector | None


class SharedModels:
    """What one worker process loads once: see the module docstring."""

    def __init__(self, settings: AgentSettings) -> None:
        s = settings
        t0 = time.perf_counter()
        self.settings = s
        self.whisper = WhisperEngine(
            require(s.model_path(s.whisper_model), "Whisper model folder"),
            compute_type=s.whisper_compute_type, cpu_threads=s.whisper_threads, languages=s.language_list,
            window=s.whisper_window,
        )
        self.piper = PiperVoiceModel(require(s.model_path(s.piper_voice), "Piper voice"))
        self._voices: dict[str, PiperVoiceModel | None] = {}  # other Piper voices calls name, loaded on first use
        self._voices_lock = threading.Lock()
        self._vad = silero.VAD.load(
            onnx_file_path=require(s.model_path(s.vad_model), "Silero VAD model"),
            min_silence_duration=s.min_silence,
            min_speech_duration=s.min_speech,
        )
        self.smart_turn: SmartTurnModel | None = None
        if s.turn_model:
            self.smart_turn = SmartTurnModel(require(s.model_path(s.turn_model), "Smart Turn model"))
        self._warm_up()
        self.load_seconds = time.perf_counter() - t0
        logger.info("call models loaded in %.2f s (shared by every call of this process)", self.load_seconds)

    def _warm_up(self) -> None:
        """Run each model once, so the first caller does not pay for lazy initialisation
        (ONNX graph optimisation, CTranslate2 buffers, the transcript hyphenator's tables)."""
        import numpy as np
        from livekit.agents.tokenize import basic

        t0 = time.perf_counter()
        noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
        self.whisper.transcribe(noise, language="en")
        list(self.piper.voice.synthesize("Hello."))
        if self.smart_turn is not None:
            self.smart_turn.probability(noise)
        basic.hyphenate_word("warming")
        logger.info("models warmed up in %.2f s", time.perf_counter() - t0)

    def piper_voice(self, rel: str) -> PiperVoiceModel | None:
        """A Piper voice under the models folder, loaded once per process; None when it is not there."""
        path = self.settings.model_path(rel)
        if path == self.settings.model_path(self.settings.piper_voice):
            return self.piper
        with self._voices_lock:
            if rel not in self._voices:
                ok = path.is_file() and path.with_name(path.name + ".json").is_file()
                self._voices[rel] = PiperVoiceModel(path) if ok else None
            return self._voices[rel]

    def english_voice(self, name: str | None) -> lk_tts.TTS:
        """The call's English voice by name (agent/voices.py); the default Piper voice when it is not here."""
        if not name:
            return PiperTTS(self.piper)
        if name == ESPEAK:
            return EspeakTTS(language="en", sample_rate=self.piper.sample_rate)
        model = self.piper_voice(name)
        if model is None:
            logger.warning("no voice %s in %s: the default voice speaks", name, self.settings.models_dir)
            return PiperTTS(self.piper)
        return PiperTTS(model)

    def listener(self) -> tuple[VoicedVAD, WhisperSTT]:
        """A VAD and an STT for one more voice in a call (a colleague who took it over), on the shared weights."""
        vad = VoicedVAD(silero.VAD(session=self._vad._onnx_session, opts=dataclasses.replace(self._vad._opts)))
        return vad, WhisperSTT(self.whisper, language=self.settings.whisper_language)

    def for_call(self, voices: dict[str, str] | None = None) -> CallModels:
        """One call's plugins; ``voices`` names the call's voice per language (from its avatar and persona)."""
        s = self.settings
        named = voices or {}
        # a VAD per call (its own state and events) over the one ONNX session
        vad = VoicedVAD(silero.VAD(session=self._vad._onnx_session, opts=dataclasses.replace(self._vad._opts)))
        by_lang: dict[str, lk_tts.TTS] = {"en": self.english_voice(named.get("en"))}
        if "zh" in s.language_list:
            by_lang["zh"] = mandarin_voice(s, english=by_lang["en"], sample_rate=by_lang["en"].sample_rate,
                                           voice=named.get("zh"))  # agent/zh_tts.py
        speech = BilingualTTS(by_lang, default="en")
        # the first clause of an answer is spoken while the rest is synthesised
        tts = lk_tts.StreamAdapter(tts=speech, sentence_tokenizer=ClauseTokenizer())
        turn = SmartTurnDetector(self.smart_turn, threshold=s.turn_threshold) if self.smart_turn else None
        return CallModels(vad=vad, stt=WhisperSTT(self.whisper, language=s.whisper_language), tts=tts,
                          turn_detector=turn)


_shared: SharedModels | None = None
_lock = threading.Lock()


def shared_models(settings: AgentSettings | None = None) -> SharedModels:
    """The process's models, loaded on first use (thread-safe: calls start in their own threads)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = SharedModels(settings or AgentSettings())
        return _shared
