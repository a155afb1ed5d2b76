"""Turns the agent's speech into synchronised video + audio frames through an engine.

The LiveKit ``AvatarRunner`` pushes the agent's audio here and pulls frames out.
Engine compute runs in a worker thread (``executor``), never on the event loop.

Interruption is one code path: :meth:`EngineVideoGenerator.interrupt` runs
synchronously when the receiver gets ``lk.clear_buffer``; it bumps an epoch so
that every frame rendered for the old speech is dropped wherever it is
(queued audio, a chunk being rendered, frames not yet yielded, the
synchroniser's queue), and the engine is told to return to idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from agent.audio import Resampled
from agent.metrics import FRAMES, RENDER

from .engines.base import EngineSession

logger = logging.getLogger("avatar.generator")


def _to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


class EngineVideoGenerator(VideoGenerator):
    """A ``VideoGenerator`` that drives any :class:`EngineSession`.

    Speech is cut into chunks of ``chunk_frames`` video frames; each chunk yields
    its frames interleaved with the matching slice of the original audio, so audio
    and video leave together. With no speech queued, the engine renders idle frames
    (silence) so the face stays alive; the synchroniser's bounded queue paces it.
    """

    def __init__(
        self,
        session: EngineSession,
        *,
        audio_sample_rate: int,
        executor: Executor | None = None,
    ) -> None:
        self._session = session
        self._info = session.info
        self._out_rate = audio_sample_rate
        if audio_sample_rate % self._info.fps:
            raise ValueError(f"audio sample rate {audio_sample_rate} must be a multiple of the video fps")
        self._out_spf = audio_sample_rate // self._info.fps  # output samples per video frame
        self._executor = executor
        self._pending: list[np.ndarray] = []  # int16 mono at the output rate, current segment
        self._pending_len = 0
        self._resampler: Resampled | None = None  # for speech that arrives at another rate
        self._segments: list[np.ndarray] = []  # whole segments whose end marker has arrived
        self._epoch = 0
        self._engine_epoch = 0  # the epoch the engine's state belongs to
        self._ignore_stale_end = False
        self._clear_sync_queue: Callable[[], Awaitable[None]] | None = None
        self._speaking = False
        self._closed = False
        self._inflight: asyncio.Future | None = None
        self.frames_rendered = 0
        self.last_speech_at: float | None = None  # monotonic time of the last speech frame sent out
        self.render_seconds = 0.0

    # ----------------------------------------------------------------- wiring
    def attach(self, audio_recv: rtc.EventEmitter, clear_sync_queue: Callable[[], Awaitable[None]] | None) -> None:
        """Listen to ``clear_buffer`` synchronously (before the runner's own async handler)."""
        audio_recv.on("clear_buffer", self.interrupt)
        self._clear_sync_queue = clear_sync_queue

    # ------------------------------------------------------------------ input
    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            if self._ignore_stale_end:
                # the end marker of the stream that was just cleared: nothing to end
                self._ignore_stale_end = False
                return
            if self._resampler is not None:  # the segment's last samples still inside the resampler
                self._queue_pcm(np.frombuffer(self._resampler.flush(), np.int16))
                self._resampler = None
            self._segments.append(np.concatenate(self._pending) if self._pending else np.zeros(0, np.int16))
            self._pending, self._pending_len = [], 0
        else:
            self._ignore_stale_end = False
            pcm = np.frombuffer(frame.data, dtype=np.int16)
            if frame.num_channels > 1:
                pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
            if frame.sample_rate == self._out_rate:
                self._queue_pcm(pcm)
                return
            # another rate than ours: one stateful resampler over the whole segment (no seams per frame)
            if self._resampler is None or self._resampler.src != frame.sample_rate:
                self._resampler = Resampled(frame.sample_rate, self._out_rate)
            self._queue_pcm(np.frombuffer(self._resampler.push(pcm), np.int16))

    def _queue_pcm(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._pending.append(pcm)
            self._pending_len += len(pcm)

    def interrupt(self) -> None:
        """Drop all queued and in-flight speech; the engine returns to idle."""
        self._epoch += 1
        self._pending, self._pending_len = [], 0
        self._resampler = None  # what it holds belongs to the dropped speech
        self._segments.clear()
        self._ignore_stale_end = True
        self._speaking = False
        logger.info("interrupted: speech dropped, returning to idle")

    async def clear_buffer(self) -> None:
        # Called by the runner after our synchronous interrupt(); also drop what the
        # synchroniser still holds (~100 ms) so the avatar stops at once.
        if self._clear_sync_queue is not None:
            await self._clear_sync_queue()

    # ----------------------------------------------------------------- output
    def _take_chunk(self) -> tuple[np.ndarray | None, bool]:
        """Next speech chunk (int16 at the output rate) and whether it ends its segment."""
        need = self._out_spf * self._info.chunk_frames
        if self._segments:
            data = self._segments[0]
            if len(data) > need:
                self._segments[0] = data[need:]
                return data[:need], False
            self._segments.pop(0)
            # tail shorter than a chunk: pad with silence instead of dropping it
            return np.pad(data, (0, need - len(data))), True
        if self._pending_len >= need:
            data = np.concatenate(self._pending)
            self._pending = [data[need:]]
            self._pending_len = len(data) - need
            return data[:need], False
        return None, False

    def _render(self, audio_out: np.ndarray, speaking: bool, epoch: int) -> list[np.ndarray] | None:
        # runs in the executor thread
        if epoch != self._epoch:
            return None  # started before an interruption: its audio is stale, do not feed the engine
        if self._engine_epoch != epoch:
            # the first render started after an interruption resets the engine, whichever
            # render happened to be running when the interruption came
            self._engine_epoch = epoch
            self._session.interrupt()
        audio = _resample(_to_float(audio_out), self._out_rate, self._info.sample_rate)
        t0 = time.perf_counter()
        frames = self._session.generate(audio, speaking=speaking)
        took = time.perf_counter() - t0
        self.render_seconds += took
        self.frames_rendered += len(frames)
        FRAMES.inc(len(frames))
        RENDER.observe(took)
        return frames if epoch == self._epoch else None

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    def _start_render(self, loop: asyncio.AbstractEventLoop, silence: np.ndarray) -> tuple:
        """Take the next chunk (speech, or silence while idle) and start rendering it in a thread."""
        epoch = self._epoch
        chunk, ends_segment = self._take_chunk()
        speech = chunk is not None
        if speech:
            speaking = True
            self._speaking = not ends_segment
        else:
            speaking = self._speaking  # mid-answer gap (TTS slower than playback): keep the talking pose
        audio_out = chunk if speech else silence
        fut = loop.run_in_executor(self._executor, self._render, audio_out, speaking, epoch)
        self._inflight = fut
        return fut, audio_out, speech, ends_segment, epoch

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        loop = asyncio.get_running_loop()
        silence = np.zeros(self._out_spf * self._info.chunk_frames, np.int16)
        nxt = self._start_render(loop, silence)
        while not self._closed:
            fut, audio_out, speech, ends_segment, epoch = nxt
            frames = await fut
            # Render the next chunk while this one plays out, so a chunked engine (28 frames a
            # call) does not stall the stream at every chunk boundary. One render per session
            # at a time: the next one starts only after this one has finished.
            nxt = self._start_render(loop, silence)
            if frames is None:
                continue  # interrupted while rendering: those frames showed old speech
            for i, img in enumerate(frames):
                if epoch != self._epoch:
                    break
                yield rtc.VideoFrame(img.shape[1], img.shape[0], rtc.VideoBufferType.RGB24, img.tobytes())
                if speech:
                    piece = audio_out[i * self._out_spf : (i + 1) * self._out_spf]
                    self.last_speech_at = time.monotonic()
                    yield rtc.AudioFrame(piece.tobytes(), self._out_rate, 1, len(piece))
            if speech and ends_segment and epoch == self._epoch:
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self._closed = True
        if self._inflight is not None:
            # never close the session under a render still running in its thread
            await asyncio.wait([self._inflight])
        self._session.close()
