"""One clock for the avatar's voice and face: each video frame leaves when its audio starts to play.

``rtc.AVSynchronizer`` (which ``AvatarRunner`` builds) runs the two tracks on two clocks: audio
leaves the native source's queue in real time, video leaves a queue of its own paced by a wall-clock
frame schedule that catches up in a burst when it is late (up to 300 ms). When rendering falls
behind (two calls on two cores), the audio queue drains and refills, the video schedule catches up,
and from then on each frame leaves as soon as it is pushed while its audio still waits behind
~100 ms of queued audio: the mouth leads the voice by that queue's depth, for as long as the box
stays busy (measured at the caller: -40..-229 ms with two calls).

:class:`AudioClockedSync` keeps one timeline, the audio's. Pushing audio reserves its place in the
queue (it starts when everything queued before it has played); the video frame pushed after it is
captured at that start time. A video frame with no audio (the idle face, or a pause inside an answer
while the TTS is late) gets a frame of silence, so the clock keeps running and the queue keeps
pacing the generator. When speech starts after the face was idle, the silence still queued is
dropped with its frames (it would only delay the first word), so the answer starts at once.

Measured at the caller (``python -m bench.soak``, README "Benchmarks"), the audio's way from the
source to the ear is longer than the video's to the screen by a steady ~110 ms, quiet box or busy:
``video_delay_ms`` (``AVATAR_SYNC_VIDEO_DELAY_MS``) captures each frame that long after its audio
leaves the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from livekit import rtc

logger = logging.getLogger("avatar.sync")


class AudioClockedSync:
    """A drop-in for ``rtc.AVSynchronizer`` (push, clear_queue, wait_for_playout, aclose) whose video
    follows the audio's clock. The generator pushes a frame's audio before its video."""

    def __init__(self, *, audio_source: rtc.AudioSource, video_source: rtc.VideoSource, video_fps: float,
                 queue_size_ms: int, video_delay_ms: float = 0.0) -> None:
        self._audio = audio_source
        self._video = video_source
        spf = int(round(audio_source.sample_rate / video_fps))
        self._silence = rtc.AudioFrame(bytes(2 * spf * audio_source.num_channels), audio_source.sample_rate,
                                       audio_source.num_channels, spf)
        self._queue_s = queue_size_ms / 1000  # the audio source's queue_size_ms
        # how long after its audio leaves the source a frame is captured: the audio's way from the
        # source to the caller's ear is this much longer than the video's to the screen (measured)
        self._video_delay = video_delay_ms / 1000
        self._audio_end = 0.0  # monotonic time at which all audio queued so far will have played
        self._speech_end = 0.0  # ... and all speech (what is queued after it is silence)
        self._paired: float | None = None  # start of the audio pushed for the next video frame
        self._due: deque[tuple[float, rtc.VideoFrame]] = deque()  # video frames and when they leave
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.create_task(self._capture_video())
        self._lags: deque[float] = deque(maxlen=8)  # recent readings of the native queue against the model
        self.dropped_silence = 0  # idle frames dropped so that an answer did not wait behind them
        self.slip_s = 0.0  # how far the native queue's timer has fallen behind wall time, in all

    # ------------------------------------------------------------------ in
    def _reserve(self, duration: float) -> float:
        """When audio of ``duration`` pushed now starts to play (and reserve its place)."""
        start = max(time.monotonic(), self._audio_end)
        self._audio_end = start + duration
        return start

    async def push(self, frame: rtc.VideoFrame | rtc.AudioFrame, timestamp: float | None = None) -> None:
        if isinstance(frame, rtc.AudioFrame):
            if time.monotonic() >= self._speech_end and self._audio_end > time.monotonic():
                self._drop_queued()  # only silence is queued: the voice need not wait behind it
            await self._capture(frame)
            self._speech_end = self._audio_end
            if self._paired is None:
                self._paired = self._audio_end - frame.duration
            return
        start, self._paired = self._paired, None
        if start is None:  # no audio with this frame: silence keeps the audio clock (and the pacing) going
            await self._capture(self._silence)
            start = self._audio_end - self._silence.duration
        self._schedule(start, frame)

    async def _capture(self, frame: rtc.AudioFrame) -> None:
        """Queue ``frame``'s audio; on return, ``_audio_end`` is when it will have played.

        The native queue plays 10 ms every 10 ms of its own timer, which slips when the box is busy
        (1.5 % measured with two calls and three busy processes on two cores), so a model that
        counts only wall time runs ahead of the audio. A capture that had to wait returns when
        the queue has drained to exactly its size (``queue_size_ms``): that frame then ends one queue
        later. The completion reaches this loop late by however long the loop was busy, so the model
        follows the lowest of the last few such readings, not each one."""
        called = time.monotonic()
        self._reserve(frame.duration)
        full = self._audio_end - called > self._queue_s + 0.005  # the queue must drain before this returns
        await self._audio.capture_frame(frame)
        done = time.monotonic()
        if not full:
            return  # it fit at once (a slow return is this loop being busy): nothing to read
        lag = done + self._queue_s - self._audio_end  # > 0: the audio plays later than the model
        self._lags.append(lag)
        if len(self._lags) >= 4 and (shift := min(self._lags)) > 0.001:
            self._audio_end += shift
            if self._speech_end > done:  # speech still queued plays later by as much
                self._speech_end += shift
            self._lags = deque((x - shift for x in self._lags), maxlen=self._lags.maxlen)
            self.slip_s += shift

    def _schedule(self, at: float, frame: rtc.VideoFrame) -> None:
        self._due.append((at + self._video_delay, frame))
        self._wake.set()

    def _drop_queued(self) -> None:
        now = time.monotonic()
        self._audio.clear_queue()
        while self._due and self._due[-1][0] - self._video_delay > now:  # the frames of that silence
            self._due.pop()
            self.dropped_silence += 1
        self._audio_end = now
        self._lags.clear()  # the queue is empty: no slip is left in it

    async def clear_queue(self) -> None:
        """An interruption: drop the queued audio and the frames that were to show with it."""
        self._audio.clear_queue()
        self._due.clear()
        self._paired = None
        self._audio_end = self._speech_end = time.monotonic()
        self._lags.clear()

    async def wait_for_playout(self) -> None:
        while self._due and not self._closed:
            await asyncio.sleep(self._due[-1][0] - time.monotonic() + 0.005)
        await self._audio.wait_for_playout()

    # ------------------------------------------------------------------ out
    async def _capture_video(self) -> None:
        while not self._closed:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            at, frame = self._due[0]
            wait = at - time.monotonic()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    # woken early by a clear (the frame may be gone) or by a new frame (harmless)
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            self._due.popleft()
            self._video.capture_frame(frame)

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
