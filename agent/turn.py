"""End of turn from the caller's voice: Smart Turn v3.2 (ONNX, BSD-2-Clause) as a LiveKit turn detector.

A fixed VAD silence is a bad judge of "the caller has finished": short enough to answer
quickly, it cuts people off in a mid-sentence pause ("I'd like to know, um, ... if");
long enough to let them pause, it makes every answer late. Smart Turn listens to the last
8 s of the caller's audio (intonation, rhythm, a trailing "um") and gives the probability
that the turn is complete.

:class:`SmartTurnDetector` implements the agents framework's streaming turn-detector
protocol (``stream()`` -> ``push_audio`` / ``predict`` / ``flush``), so the framework
itself asks it after ~0.2 s of VAD silence and then commits the turn after
``endpointing.min_delay`` when it says "complete", or waits up to
``endpointing.max_delay`` for the caller to go on when it says "not yet".

One ONNX session serves every call of the process; predictions run one at a time on
a dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice.turn import TurnDetectionEvent

logger = logging.getLogger("agent.turn")

SAMPLE_RATE = 16000
WINDOW_S = 8  # the model sees the last 8 s, zero-padded at the front


class SmartTurnModel:
    """The ONNX model and its Whisper-style features; ``probability(pcm)`` is thread-safe."""

    def __init__(self, onnx_path: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from transformers import WhisperFeatureExtractor

        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting between calls
        self._session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._features = WhisperFeatureExtractor(chunk_length=WINDOW_S)
        self._lock = threading.Lock()
        # predictions of every call, one at a time (~30 ms each on a quiet core)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self.path = Path(onnx_path)
        logger.info("smart turn model %s loaded in %.2f s", self.path.name, time.perf_counter() - t0)

    def probability(self, pcm: np.ndarray) -> float:
        """P(turn complete) for int16 or float32 mono 16 kHz audio ending now."""
        audio = pcm.astype(np.float32)
        if pcm.dtype == np.int16:
            audio /= 32768.0
        n = WINDOW_S * SAMPLE_RATE
        audio = audio[-n:]
        if len(audio) < n:
            audio = np.pad(audio, (n - len(audio), 0))
        feats = self._features(audio, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="max_length",
                               max_length=n, truncation=True, do_normalize=True).input_features
        with self._lock:
            out = self._session.run(None, {"input_features": feats.astype(np.float32)})
        return float(np.asarray(out[0]).reshape(-1)[0])


class SmartTurnDetector:
    """A streaming turn detector (the framework's protocol) over a shared :class:`SmartTurnModel`."""

    def __init__(self, model: SmartTurnModel, *, threshold: float = 0.5, prediction_timeout: float = 1.0) -> None:
        self._model = model
        self._threshold = threshold
        self._timeout = prediction_timeout

    @property
    def model(self) -> str:
        return self._model.path.stem

    @property
    def provider(self) -> str:
        return "smart-turn"

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SmartTurnStream:
        return SmartTurnStream(self)

    def _run(self, pcm: np.ndarray) -> tuple[float, float]:
        t0 = time.perf_counter()
        p = self._model.probability(pcm)
        return p, time.perf_counter() - t0


class SmartTurnStream:
    """One call's audio for the detector: a ring of the last 8 s, cleared when a turn is committed."""

    def __init__(self, detector: SmartTurnDetector) -> None:
        self._det = detector
        self._buf = np.zeros(WINDOW_S * SAMPLE_RATE, np.int16)
        self._filled = 0
        self._pos = 0  # next write position in the ring
        self._resampler: rtc.AudioResampler | None = None
        self._in_rate: int | None = None
        self._fut: asyncio.Future[TurnDetectionEvent] | None = None
        self._closed = False
        self.last_probability: float | None = None

    # protocol: properties and thresholds
    @property
    def model(self) -> str:
        return self._det.model

    @property
    def provider(self) -> str:
        return self._det.provider

    @property
    def is_fallback(self) -> bool:
        return False

    @property
    def prediction_timeout(self) -> float:
        return self._det._timeout

    async def unlikely_threshold(self, language: LanguageCode | None) -> float | None:
        return self._det._threshold

    async def backchannel_threshold(self, language: LanguageCode | None) -> float | None:
        return None

    async def supports_language(self, language: LanguageCode | None) -> bool:
        return True  # the model is multilingual (trained on 23 languages, Mandarin and English included)

    # audio in
    def push_audio(self, frame: rtc.AudioFrame) -> None:
        if self._closed:
            return
        if self._in_rate is None:
            self._in_rate = frame.sample_rate
            if frame.sample_rate != SAMPLE_RATE or frame.num_channels != 1:
                self._resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE, num_channels=frame.num_channels)
        frames = self._resampler.push(frame) if self._resampler else [frame]
        for f in frames:
            pcm = np.frombuffer(f.data, np.int16)
            if f.num_channels > 1:
                pcm = pcm.reshape(-1, f.num_channels)[:, 0]
            self._append(pcm)

    def _append(self, pcm: np.ndarray) -> None:
        # a ring: 10 ms frames arrive 100 times a second per call, so no copying of the 8 s window
        n = len(self._buf)
        pcm = pcm[-n:]
        end = self._pos + len(pcm)
        if end <= n:
            self._buf[self._pos:end] = pcm
        else:
            first = n - self._pos
            self._buf[self._pos:] = pcm[:first]
            self._buf[: end - n] = pcm[first:]
        self._pos = end % n
        self._filled = min(n, self._filled + len(pcm))

    def _window(self) -> np.ndarray:
        """The last ``_filled`` samples, oldest first."""
        ordered = np.concatenate([self._buf[self._pos:], self._buf[: self._pos]])
        return ordered[len(ordered) - self._filled:]

    # predictions
    def predict(self) -> asyncio.Future[TurnDetectionEvent]:
        loop = asyncio.get_running_loop()
        self.cancel_inference()
        fut: asyncio.Future[TurnDetectionEvent] = loop.create_future()
        if self._closed or self._filled == 0:
            fut.set_result(_event(1.0))
            return fut
        self._fut = fut
        snapshot = self._window()
        work = loop.run_in_executor(self._det._model.pool, self._det._run, snapshot)

        def _done(w: asyncio.Future[tuple[float, float]]) -> None:
            if fut.done():
                return  # cancelled or superseded: new speech came in
            if w.exception() is not None:
                logger.error("smart turn prediction failed: %s", w.exception())
                fut.set_result(_event(1.0))  # never hold a turn on a broken detector
                return
            p, secs = w.result()
            self.last_probability = p
            logger.debug("end-of-turn probability %.2f (%.0f ms)", p, 1000 * secs)
            fut.set_result(_event(p, inference_duration=secs))

        work.add_done_callback(_done)
        return fut

    def cancel_inference(self, *, timed_out: bool = False) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result(_event(0.0))

    def flush(self, reason: str | None = None) -> None:
        # the turn is committed: the next turn's prediction must not hear this one
        self._filled = 0
        self._pos = 0
        self.cancel_inference()

    def end_input(self) -> None:
        self.flush()
        self._closed = True

    async def aclose(self) -> None:
        self.end_input()


def _event(p: float, *, inference_duration: float | None = None) -> TurnDetectionEvent:
    return TurnDetectionEvent(type="eot_prediction", end_of_turn_probability=p, last_speaking_time=time.time(),
                              inference_duration=inference_duration)
