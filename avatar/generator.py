"""Turns the agent's speech into synchronised video + audio frames through an engine.

The LiveKit ``AvatarRunner`` pushes the agent's audio here and pulls frames out.
Engine compute runs in a worker thread (``executor``), never on the event loop.

Interruption is one typed message in one queue: the agent's audio, its segment ends and
:data:`INTERRUPT` (put there synchronously when the receiver gets ``lk.clear_buffer``) go
into one inbox, in the order they happened, and one consumer, the output stream, takes
them. Taking an interruption drops everything before it (queued speech, the half-cut
chunk, the resampler's state), resets the engine before its next render, and drops the
render in flight and the frames not yet yielded (an interruption waiting in the inbox
stops the stream at its next frame). The stream that was cleared sends its end marker
late; the consumer drops an end that follows an interruption with no speech between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Final

import numpy as np
from livekit import rtc
from livekit.agents.utils.audio import AudioByteStream
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from agent.audio import Resampled
from agent.metrics import FRAMES, RENDER

from .engines.base import EngineSession

logger = logging.getLogger("avatar.generator")


def _to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


class Interrupt:
    """The caller interrupted: what was said before this message is not to be shown."""

    def __repr__(self) -> str:
        return "INTERRUPT"


INTERRUPT: Final = Interrupt()
Message = rtc.AudioFrame | AudioSegmentEnd | Interrupt


class EngineVideoGenerator(VideoGenerator):
    """A ``VideoGenerator`` that drives any :class:`EngineSession`.

    Audio is handled once, at the input edge: speech at another rate than the engine's goes through
    one stateful ``rtc.AudioResampler`` per segment, and one ``AudioByteStream`` cuts it into chunks of
    exactly ``samples_per_chunk`` (a segment's tail is padded with silence), so every engine gets one
    chunk of its size at its own rate, and the audio that leaves is that same chunk, at that rate.
    Each chunk yields its frames interleaved with the matching slice of its audio (the slice before
    its frame), so audio and video leave together. With no speech queued, the engine renders idle
    frames (silence) so the face stays alive; the synchroniser's bounded queue paces it.
    """

    def __init__(self, session: EngineSession, *, executor: Executor | None = None) -> None:
        self._session = session
        self._info = session.info
        self._out_rate = self._info.sample_rate  # what the engine hears is what the caller hears
        self._out_spf = self._info.samples_per_frame  # samples per video frame
        self._executor = executor
        # The one queue: what the agent sent and the interruptions, in order (see the module docstring).
        self._inbox: deque[Message] = deque()
        self._interrupts_waiting = 0  # INTERRUPTs in the inbox (the stream stops at its next frame)
        # The consumer's state (only the output stream touches it).
        self._chunker = self._new_chunker()  # the current segment, cut into the engine's chunks (int16 mono)
        self._chunk_bytes = 2 * self._info.samples_per_chunk
        self._resampler: Resampled | None = None  # for speech that arrives at another rate
        self._chunks: deque[tuple[np.ndarray, bool]] = deque()  # (chunk, ends its segment), in order
        self._after_interrupt = False  # nothing but an interruption since the last speech
        self._reset_engine = False  # the next render starts from idle
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
        self._inbox.append(frame)

    def interrupt(self) -> None:
        """Drop all queued and in-flight speech; the engine returns to idle (the consumer does it)."""
        self._inbox.append(INTERRUPT)
        self._interrupts_waiting += 1
        logger.info("interrupted: speech dropped, returning to idle")

    async def clear_buffer(self) -> None:
        # Called by the runner after our synchronous interrupt(); also drop what the
        # synchroniser still holds (~100 ms) so the avatar stops at once.
        if self._clear_sync_queue is not None:
            await self._clear_sync_queue()

    # ------------------------------------------------------------- consumer
    def _take_inbox(self) -> None:
        """Everything the inbox holds, in order, into chunks of the engine's size."""
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, Interrupt):
                self._interrupts_waiting -= 1
                self._chunks.clear()
                self._chunker = self._new_chunker()
                self._resampler = None  # what it holds belongs to the dropped speech
                self._speaking = False
                self._after_interrupt = self._reset_engine = True
            elif isinstance(item, AudioSegmentEnd):
                if self._after_interrupt:
                    self._after_interrupt = False  # the end marker of the stream that was cleared
                    continue
                if self._resampler is not None:  # the segment's last samples still inside the resampler
                    self._queue_pcm(self._resampler.flush())
                    self._resampler = None
                self._end_segment()
            else:
                self._after_interrupt = False
                self._queue_frame(item)

    def _queue_frame(self, frame: rtc.AudioFrame) -> None:
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        if frame.sample_rate == self._out_rate:
            self._queue_pcm(pcm.tobytes())
            return
        # another rate than ours: one stateful resampler over the whole segment (no seams per frame)
        if self._resampler is None or self._resampler.src != frame.sample_rate:
            self._resampler = Resampled(frame.sample_rate, self._out_rate)
        self._queue_pcm(self._resampler.push(pcm))

    def _new_chunker(self) -> AudioByteStream:
        return AudioByteStream(self._out_rate, 1, samples_per_channel=self._info.samples_per_chunk)

    def _queue_pcm(self, pcm: bytes) -> None:
        for f in self._chunker.push(pcm):
            self._chunks.append((np.frombuffer(f.data, np.int16).copy(), False))

    def _end_segment(self) -> None:
        """The segment's tail (padded with silence to a whole chunk) ends it; a segment that filled
        whole chunks ends with its last one while that is still queued; otherwise (an empty segment,
        or its last chunk already taken to render) a chunk of silence ends it, so its end marker still
        goes out (the agent waits for it to know the answer was played)."""
        tail = b"".join(bytes(f.data) for f in self._chunker.flush())
        # a queued chunk that ends no segment belongs to this one (earlier segments are all ended)
        if not tail and self._chunks and not self._chunks[-1][1]:
            self._chunks[-1] = (self._chunks[-1][0], True)
            return
        self._chunks.append((np.frombuffer(tail.ljust(self._chunk_bytes, b"\0"), np.int16).copy(), True))

    # ----------------------------------------------------------------- output
    def _take_chunk(self) -> tuple[np.ndarray | None, bool]:
        """Next speech chunk (int16, ``samples_per_chunk``) and whether it ends its segment."""
        self._take_inbox()
        return self._chunks.popleft() if self._chunks else (None, False)

    def _render(self, audio_out: np.ndarray, speaking: bool, reset: bool) -> list[np.ndarray] | None:
        # runs in the executor thread, one render per session at a time
        if reset:
            self._session.interrupt()  # the first render after an interruption starts from idle
        if self._interrupts_waiting:
            return None  # interrupted while this waited for a thread: its audio is stale, spare the engine
        audio = _to_float(audio_out)
        t0 = time.perf_counter()
        frames = self._session.generate(audio, speaking=speaking)
        took = time.perf_counter() - t0
        self.render_seconds += took
        self.frames_rendered += len(frames)
        FRAMES.inc(len(frames))
        RENDER.observe(took)
        return frames

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    def _start_render(self, loop: asyncio.AbstractEventLoop, silence: np.ndarray) -> tuple:
        """Take the inbox and the next chunk (speech, or silence while idle); start rendering it in a thread."""
        chunk, ends_segment = self._take_chunk()
        reset, self._reset_engine = self._reset_engine, False
        speech = chunk is not None
        if speech:
            speaking = True
            self._speaking = not ends_segment
        else:
            speaking = self._speaking  # mid-answer gap (TTS slower than playback): keep the talking pose
        audio_out = chunk if speech else silence
        fut = loop.run_in_executor(self._executor, self._render, audio_out, speaking, reset)
        self._inflight = fut
        return fut, audio_out, speech, ends_segment

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        loop = asyncio.get_running_loop()
        silence = np.zeros(self._out_spf * self._info.chunk_frames, np.int16)
        nxt = self._start_render(loop, silence)
        while not self._closed:
            fut, audio_out, speech, ends_segment = nxt
            frames = await fut
            stale = self._interrupts_waiting > 0  # an interruption came while it rendered: old speech
            # Render the next chunk while this one plays out, so a chunked engine (28 frames a
            # call) does not stall the stream at every chunk boundary. One render per session
            # at a time: the next one starts only after this one has finished.
            nxt = self._start_render(loop, silence)
            if frames is None or stale:
                continue
            for i, img in enumerate(frames):
                if self._interrupts_waiting:
                    break  # an interruption waits in the inbox: the rest shows old speech
                if speech:  # the frame's audio first: the synchroniser shows the frame when it plays
                    piece = audio_out[i * self._out_spf : (i + 1) * self._out_spf]
                    self.last_speech_at = time.monotonic()
                    yield rtc.AudioFrame(piece.tobytes(), self._out_rate, 1, len(piece))
                yield rtc.VideoFrame(img.shape[1], img.shape[0], rtc.VideoBufferType.RGB24, img.tobytes())
            if speech and ends_segment and not self._interrupts_waiting:
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self._closed = True
        if self._inflight is not None:
            # never close the session under a render still running in its thread
            await asyncio.wait([self._inflight])
        self._session.close()
