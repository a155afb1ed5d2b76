"""A scripted caller: joins a room like a person would, speaks WAV questions, records what it gets back.

It measures what the caller experiences: the avatar's audio and video as
received (recorded to MP4 with their arrival times), per-turn latency from the
end of its own speech to the first answer audio and to the first video frame
of the avatar speaking, the video frame rate, mouth motion, and the live
transcriptions both sides publish.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

from agent.tts import speak

from .avsync import AvOffset, offset_of

logger = logging.getLogger("harness.caller")

RATE = 16000  # the caller records and speaks at 16 kHz mono


def _rms(pcm: np.ndarray) -> float:
    """int16 RMS of one piece of audio (0 for an empty one)."""
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if pcm.size else 0.0


def synthesize(text: str, voice_path: Path, *, steady: bool = False) -> np.ndarray:
    """Speak ``text`` with a local Piper voice (loaded once per path); int16 mono at 16 kHz
    (``steady``: the same samples every time, see :func:`agent.tts.speak`)."""
    return speak(text, voice_path, RATE, steady=steady)


def fake_microphone_wav(path: Path, pcm: np.ndarray, *, lead: float, tail: float) -> Path:
    """A WAV for Chromium's fake microphone (``--use-file-for-fake-audio-capture``): ``lead`` s of
    silence, ``pcm`` (int16 at 16 kHz), ``tail`` s of silence. Chromium loops the file, so the tail
    leaves the agent time to answer."""
    import wave

    silence = lambda s: np.zeros(int(s * RATE), np.int16)  # noqa: E731
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate([silence(lead), pcm.astype(np.int16), silence(tail)]).tobytes())
    return path


@dataclass
class VideoSample:
    t: float  # arrival, seconds on the caller's clock (time.time())
    motion: float | None  # mean abs change of the mouth region (grey) since the previous frame
    shown: float | None = None  # WebRTC's render time for it (same clock), where it gave one


@dataclass
class Turn:
    question: str
    speech_start: float = 0.0
    speech_end: float = 0.0
    first_audio: float | None = None
    first_video: float | None = None
    answer_end: float | None = None

    def as_dict(self) -> dict[str, Any]:
        def ms(t: float | None) -> float | None:
            return None if t is None else round(1000 * (t - self.speech_end))

        return {
            "question": self.question,
            "speech_start": self.speech_start,
            "speech_end": self.speech_end,
            "to_first_audio_ms": ms(self.first_audio),
            "to_first_video_ms": ms(self.first_video),
            "answer_end": self.answer_end,
        }


class Mp4Recorder:
    """Writes received video and audio to an MP4, each at the time the caller got it.

    Video frames carry the receiver's render time (``VideoFrameEvent.timestamp_us``, set
    by WebRTC's jitter buffer), so their timestamps do not depend on when this Python
    process got round to reading them. Audio has no such stamp: it is kept in memory
    (32 kB/s) and laid out at the end, each frame at ``arrival - audio before it``, using
    the earliest such estimate from that frame on (a busy moment here only makes frames
    look late, and they catch up; frames that really went missing leave a gap that stays).
    The file therefore shows exactly the sync the caller experienced.
    """

    def __init__(self, path: Path, t0: float, width: int, height: int) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self._c = av.open(str(path), "w")
        self._v = self._c.add_stream("libx264", rate=25, options={"preset": "veryfast", "tune": "zerolatency"})
        self._v.width, self._v.height, self._v.pix_fmt = width, height, "yuv420p"
        from fractions import Fraction

        self._v.codec_context.time_base = Fraction(1, 1000)
        self._a = self._c.add_stream("aac", rate=RATE)
        self._a.layout = "mono"
        self._t0 = t0
        self._q: queue.Queue = queue.Queue(maxsize=400)
        self._last_pts = -1
        self._audio: list[tuple[np.ndarray, float]] = []
        self._thread = threading.Thread(target=self._run, name="mp4", daemon=True)
        self._thread.start()

    def video(self, rgb: np.ndarray, t: float) -> None:
        """A frame the caller got (to show) at ``t`` (time.time() clock)."""
        self._q.put(("v", rgb, t))

    def audio(self, pcm: np.ndarray, t: float) -> None:
        """``pcm`` (int16 mono, 16 kHz) whose last sample arrived at ``t``."""
        self._audio.append((pcm, t))

    def _run(self) -> None:
        import av

        while (item := self._q.get()) is not None:
            _kind, data, t = item
            pts = int(1000 * (t - self._t0))
            if pts <= self._last_pts:
                pts = self._last_pts + 1
            self._last_pts = pts
            frame = av.VideoFrame.from_ndarray(data, format="rgb24")
            frame.pts, frame.time_base = pts, self._v.codec_context.time_base
            for pkt in self._v.encode(frame):
                self._c.mux(pkt)
        for pkt in self._v.encode(None):
            self._c.mux(pkt)
        for start, pcm in audio_timeline(self._audio, self._t0):
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for pkt in self._a.encode(frame):
                self._c.mux(pkt)
        for pkt in self._a.encode(None):
            self._c.mux(pkt)
        self._c.close()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(60)


def _first_loud(rows: list[tuple[float, float]], threshold: float, after: float,
                before: float = float("inf")) -> float | None:
    """Arrival time of the first (arrival time, RMS) row louder than ``threshold`` that arrived
    strictly between ``after`` and ``before`` (rows are in arrival order).

    The callers poll for loud audio many times a second through calls of an hour: a scan from the
    first row would grow with the call and take the cores the stack is being measured on.
    """
    i = bisect.bisect_right(rows, after, key=lambda r: r[0])
    while i < len(rows) and rows[i][0] < before:
        if rows[i][1] > threshold:
            return rows[i][0]
        i += 1
    return None


def audio_timeline(frames: list[tuple[np.ndarray, float]], t0: float) -> list[tuple[int, np.ndarray]]:
    """(first sample index on the ``t0`` timeline, samples) for received (pcm, arrival of its end) pairs.

    A frame's own estimate of where it starts is ``arrival - duration - audio before it``;
    the best estimate for it is the smallest from it on (suffix minimum). Where that
    jumps past the audio already laid out by more than 20 ms, the gap is filled with
    silence; otherwise frames follow each other.
    """
    if not frames:
        return []
    est, cum = [], 0
    for pcm, t in frames:
        est.append(int(round((t - t0) * RATE)) - pcm.size - cum)
        cum += pcm.size
    best = list(est)
    for i in range(len(best) - 2, -1, -1):
        best[i] = min(best[i], best[i + 1])
    out, pos, cum = [], None, 0
    for (pcm, _t), shift in zip(frames, best):
        start = shift + cum
        if pos is None:
            pos = max(0, start)
        elif start - pos > RATE // 50:
            out.append((pos, np.zeros(start - pos, np.int16)))
            pos = start
        out.append((pos, pcm))
        pos += pcm.size
        cum += pcm.size
    return out


@dataclass
class ScriptedCaller:
    """Joins ``room`` at ``url`` with ``token``; call :meth:`ask` for each question."""

    url: str
    token: str
    record_path: Path | None = None
    loud_threshold: float = 600.0  # int16 RMS over 10 ms that counts as the agent speaking
    room: rtc.Room = field(default_factory=rtc.Room)
    t0: float = field(default_factory=time.time)
    video: list[VideoSample] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    mouth_box: tuple[int, int, int, int] | None = None
    avatar_identity: str | None = None
    render_lag: list[float] = field(default_factory=list)  # per frame: arrival here - WebRTC render time
    last_frame: np.ndarray | None = None  # the latest video frame (RGB)
    # other people's audio by identity, as (arrival time, RMS) and PCM per 10 ms (not the agent's)
    people: dict[str, tuple[list[tuple[float, float]], list[np.ndarray]]] = field(default_factory=dict)
    # the microphone's format as published (a phone line's 8 kHz, a stereo headset...); :meth:`speak`
    # takes int16 samples at this rate, shaped (n,) or (n, mic_channels)
    mic_rate: int = RATE
    mic_channels: int = 1

    def __post_init__(self) -> None:
        self._mic = rtc.AudioSource(self.mic_rate, self.mic_channels, queue_size_ms=200)
        self._speech: asyncio.Queue[tuple[np.ndarray, asyncio.Future[float]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._streams: list[rtc.AudioStream | rtc.VideoStream] = []
        self._recorder: Mp4Recorder | None = None
        self._video_track_ready = asyncio.Event()
        self._tracks: dict[str, tuple[list[tuple[float, float]], list[np.ndarray]]] = {}

    # ----------------------------------------------------------------- setup
    async def join(self, timeout: float = 30.0) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("participant_attributes_changed", self._on_attrs)
        self.room.register_text_stream_handler("lk.transcription", self._on_transcription)
        await self.room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=True))
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._mic)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._tasks.append(asyncio.create_task(self._mic_loop()))
        for p in self.room.remote_participants.values():
            self._on_attrs({}, p)

    def _on_attrs(self, _changed: dict, p: rtc.Participant) -> None:
        box = p.attributes.get("dh.mouth_box")
        if box:
            self.mouth_box = tuple(int(v) for v in box.split(","))  # type: ignore[assignment]

    def _on_track(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        is_avatar = p.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF) is not None
        if track.kind == rtc.TrackKind.KIND_VIDEO and is_avatar:
            self.avatar_identity = p.identity
            self._on_attrs({}, p)
            self._tasks.append(asyncio.create_task(self._video_loop(track)))
        elif track.kind == rtc.TrackKind.KIND_AUDIO and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            # The avatar's audio when it is there, else the agent's own (audio-only fallback);
            # both are recorded as "what the caller hears" (only one of them carries sound).
            self._tasks.append(asyncio.create_task(self._audio_loop(track, p.identity)))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            # another person in the room (a colleague who took the call over): kept apart from the agent's voice
            self._tasks.append(asyncio.create_task(self._audio_loop(track, p.identity, self.people)))

    def _on_transcription(self, reader: rtc.TextStreamReader, identity: str) -> None:
        async def _read() -> None:
            text = await reader.read_all()
            attrs = reader.info.attributes or {}
            if attrs.get("lk.transcription_final", "true") == "true" and text.strip():
                self.transcripts.append({"t": time.time() - self.t0, "from": identity, "text": text.strip()})

        self._tasks.append(asyncio.create_task(_read()))

    async def _mic_loop(self) -> None:
        # The microphone never stops: silence between utterances, like a real one.
        step = self.mic_rate // 50  # 20 ms
        silence = np.zeros((step, self.mic_channels), np.int16)
        while True:
            try:
                pcm, done = self._speech.get_nowait()
            except asyncio.QueueEmpty:
                pcm, done = silence, None
            pcm = pcm.reshape(len(pcm), -1)
            for i in range(0, len(pcm), step):
                piece = np.ascontiguousarray(pcm[i : i + step])
                await self._mic.capture_frame(
                    rtc.AudioFrame(piece.tobytes(), self.mic_rate, self.mic_channels, len(piece)))
            if done is not None:
                # the last sample leaves once what is queued ahead of it has played
                done.set_result(time.time() + self._mic.queued_duration)

    async def _audio_loop(self, track: rtc.Track, identity: str,
                          into: dict[str, tuple[list[tuple[float, float]], list[np.ndarray]]] | None = None) -> None:
        # The avatar's audio when it is there, else the agent's own (audio-only fallback).
        # Each track is kept apart; the figures use the one that carried speech.
        buf = (self._tracks if into is None else into).setdefault(identity, ([], []))
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=10)
        self._streams.append(stream)
        async for ev in stream:
            pcm = np.frombuffer(ev.frame.data, np.int16).copy()
            buf[0].append((time.time(), _rms(pcm)))
            buf[1].append(pcm)
            if identity == self.avatar_identity and self._recorder is not None:
                self._recorder.audio(pcm, buf[0][-1][0])

    def trim(self, before: float) -> None:
        """Forget what arrived before ``before`` (a long run keeps only recent figures in memory)."""
        self.video[:] = [v for v in self.video if v.t >= before]
        self.transcripts[:] = [x for x in self.transcripts if x["t"] + self.t0 >= before]
        for rows, chunks in [*self._tracks.values(), *self.people.values()]:
            keep = next((i for i, (t, _) in enumerate(rows) if t >= before), len(rows))
            del rows[:keep], chunks[:keep]

    def _primary(self) -> tuple[list[tuple[float, float]], list[np.ndarray]]:
        if self.avatar_identity and self.avatar_identity in self._tracks:
            return self._tracks[self.avatar_identity]
        loud = max(self._tracks.values(), key=lambda b: sum(r for _, r in b[0]), default=([], []))
        return loud

    @property
    def audio_rms(self) -> list[tuple[float, float]]:
        """(arrival time, int16 RMS) per 10 ms of the agent's voice as the caller hears it."""
        return self._primary()[0]

    @property
    def audio_chunks(self) -> list[np.ndarray]:
        return self._primary()[1]

    async def _video_loop(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24)
        self._streams.append(stream)
        prev: np.ndarray | None = None
        async for ev in stream:
            now = time.time()
            # WebRTC's render time for the frame (monotonic clock), unaffected by this loop's delays
            shown = ev.timestamp_us / 1e6 + (now - time.monotonic()) if ev.timestamp_us else now
            if not (now - 1.0 < shown <= now + 0.5):
                shown = now
            f = ev.frame
            rgb = np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 3)
            motion = None
            if self.mouth_box:
                x, y, w, h = self.mouth_box
                mouth = rgb[max(0, y) : y + h, max(0, x) : x + w].mean(axis=2, dtype=np.float32)
                if mouth.size == 0:  # the box lies outside this frame (a smaller fallback picture)
                    mouth = None
                elif prev is not None and prev.shape == mouth.shape:
                    motion = float(np.abs(mouth - prev).mean())
                prev = mouth
            self.last_frame = rgb  # what the caller sees now (RGB, the frame's own buffer)
            self.video.append(VideoSample(now, motion, shown))
            self.render_lag.append(now - shown)
            if self.record_path is not None:
                if self._recorder is None:
                    self._recorder = Mp4Recorder(self.record_path, self.t0, f.width, f.height)
                self._recorder.video(rgb.copy(), shown)
            self._video_track_ready.set()

    # ---------------------------------------------------------------- script
    def said_since(self, t: float) -> str:
        """What the agent's captions said (lower case) that arrived from ``t`` (wall clock) on."""
        me = self.room.local_participant.identity
        return " ".join(x["text"].lower() for x in list(self.transcripts) if x["from"] != me and x["t"] + self.t0 >= t)

    def heard_since(self, t: float) -> str:
        """What the agent's recogniser heard from this caller (its captions of the caller, lower case) from ``t`` on."""
        me = self.room.local_participant.identity
        return " | ".join(x["text"].lower() for x in list(self.transcripts) if x["from"] == me and x["t"] + self.t0 >= t)

    async def wait_said(self, since: float, words: tuple[str, ...] = (), *, settle: float = 2.0,
                        timeout: float = 40.0) -> str:
        """The agent's captions from ``since`` on, once the answer is complete: one of ``words`` is
        in them, or (for an answer without them) they have stopped changing for ``settle`` seconds
        with the agent quiet. Captions follow the playout and can arrive after the audio has gone
        quiet, so audio timing alone cannot tell which answer a caption belongs to."""
        deadline = time.time() + timeout
        last, changed = None, time.time()
        while time.time() < deadline:
            text = self.said_since(since)
            if text != last:
                last, changed = text, time.time()
            found = bool(words) and any(w in text for w in words)
            quiet = self.loud_since(time.time() - settle) is None
            if text and quiet and time.time() - changed >= (settle if not found else settle / 2):
                break
            await asyncio.sleep(0.1)
        text = self.said_since(since)
        if words and not any(w in text for w in words):
            # what went wrong, for the log of a failing test: mis-heard, or heard and not answered
            logger.warning("expected one of %s in the answer; the agent heard %r and said %r",
                           words, self.heard_since(since), text)
        return text

    def loud_since(self, t: float) -> float | None:
        """Arrival time of the first loud 10 ms of agent audio after ``t``, on whichever track carries
        it (the avatar's, or the agent's own after it fell back to audio only)."""
        firsts = [_first_loud(rows, self.loud_threshold, t) for rows, _ in self._tracks.values()]
        return min((f for f in firsts if f is not None), default=None)

    async def wait_loud(self, since: float, timeout: float = 30.0) -> float | None:
        """Arrival time of the first loud agent audio after ``since``, waiting up to ``timeout``."""
        deadline = time.time() + timeout
        while (t := self.loud_since(since)) is None and time.time() < deadline:
            await asyncio.sleep(0.05)
        return t

    async def wait_quiet(self, quiet_for: float = 1.2, timeout: float = 30.0) -> float:
        """Wait until the agent has been silent for ``quiet_for`` seconds; returns when it went quiet."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            last_loud = next((ts for ts, rms in reversed(self.audio_rms) if rms > self.loud_threshold), 0.0)
            if time.time() - last_loud >= quiet_for:
                return last_loud
            await asyncio.sleep(0.1)
        raise TimeoutError("the agent kept talking")

    async def wait_video(self, timeout: float = 30.0) -> bool:
        try:
            await asyncio.wait_for(self._video_track_ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def speak(self, pcm: np.ndarray) -> tuple[float, float]:
        """Say ``pcm``; returns (start, end) of the speech as it left the caller."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._speech.put((pcm, done))
        end = await done
        await asyncio.sleep(max(0.0, end - time.time()))
        return end - len(pcm) / self.mic_rate, end

    async def ask(self, question: str, pcm: np.ndarray, *, answer_timeout: float = 30.0,
                  wait_answer_end: bool = True) -> Turn:
        """Speak a question and wait for the answer to start (and, by default, to end)."""
        turn = Turn(question)
        self.turns.append(turn)
        turn.speech_start, turn.speech_end = await self.speak(pcm)
        turn.first_audio = await self.wait_loud(turn.speech_end, answer_timeout)
        if turn.first_audio is None:
            raise TimeoutError(f"no answer within {answer_timeout:.0f} s to {question!r}")
        if wait_answer_end:
            turn.answer_end = await self.wait_quiet(timeout=answer_timeout)
            # rest: while the caller asked, the avatar listened
            turn.first_video = self.first_speaking_frame(turn.speech_end, turn.answer_end,
                                                         rest=(turn.speech_start, turn.speech_end))
        return turn

    # --------------------------------------------------------------- figures
    def _loud_near(self, t: float, window: float = 0.3) -> bool:
        return _first_loud(self.audio_rms, self.loud_threshold, t - window, t + window) is not None

    def mouth_motion(self, t_from: float, t_to: float) -> list[tuple[float, float]]:
        """(time, frame-to-frame change of the mouth region) per received frame.

        Frame to frame, the idle face's slow sway and breathing change the region by a
        grey level or so, while a talking mouth changes it by several.
        """
        return [(v.t, v.motion) for v in self.video if v.motion is not None and t_from <= v.t <= t_to]

    def av_offset(self, t_from: float, t_to: float, *, played: bool = True) -> AvOffset:
        """The A/V offset the caller experienced between ``t_from`` and ``t_to`` (arrival times).

        ``played``: on the timeline the MP4 recording uses (video at WebRTC's render time, audio
        laid out by :func:`audio_timeline`), so that this process being late to read a frame
        does not count as the stream being late. Otherwise both at the time this process read
        them. Raises ``ValueError`` when the window holds too little audio and video.
        """
        video = [v for v in self.video if v.motion is not None and t_from <= v.t <= t_to]
        rows, chunks = self._primary()
        audio = [(c, t) for (t, _), c in zip(rows, chunks) if t_from <= t <= t_to]
        if len(video) < 50 or len(audio) < 200:
            raise ValueError("less than 2 s of audio and video in that window")
        if not played:
            tv = np.array([v.t for v in video])
            ta, loud = np.array([(t, r) for t, r in rows if t_from <= t <= t_to]).T  # as the rows were read
        else:
            tv = np.array([v.shown if v.shown is not None else v.t for v in video])
            order = np.argsort(tv, kind="stable")  # render times only grow, but a missing one falls back
            tv = tv[order]
            video = [video[i] for i in order]
            base = audio[0][1] - 1.0
            step = RATE // 100  # 10 ms pieces, so that a filled gap weighs its length
            lay = [(start + i, c[i : i + step]) for start, c in audio_timeline(audio, base)
                   for i in range(0, c.size, step)]
            ta = np.array([base + (start + c.size / 2) / RATE for start, c in lay])
            loud = np.array([_rms(c) for _, c in lay])
        return offset_of(tv, np.array([v.motion for v in video]), ta, loud)

    def first_speaking_frame(self, t_from: float, t_to: float, *, rest: tuple[float, float] | None = None,
                             threshold: float = 3.0) -> float | None:
        """First frame after ``t_from`` where the mouth moves, two frames in a row.

        The bar is raised above the idle face's own motion (breathing, sway) measured over
        ``rest`` (default: the 2 s before ``t_from``), a time when the avatar was listening.
        """
        a, b = rest or (t_from - 2.0, t_from)
        before = [d for _, d in self.mouth_motion(a, b)]
        if len(before) >= 10:
            threshold = max(threshold, float(np.percentile(before, 99)) * 1.5)
        motion = self.mouth_motion(t_from, t_to)
        for (t, d), (_, d2) in zip(motion, motion[1:]):
            if d > threshold and d2 > threshold:
                return t
        return None

    def fps(self, t_from: float, t_to: float) -> float:
        n = sum(1 for v in self.video if t_from <= v.t <= t_to)
        return n / max(1e-6, t_to - t_from)

    def audio_between(self, t_from: float, t_to: float) -> np.ndarray:
        parts = [c for (ts, _), c in zip(self.audio_rms, self.audio_chunks) if t_from <= ts <= t_to]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    async def wait_greeting(self, timeout: float = 40.0) -> None:
        """Wait for the agent's greeting to start and then to end."""
        deadline = time.time() + timeout
        while self.loud_since(0.0) is None:
            if time.time() > deadline:
                raise TimeoutError("the agent never greeted")
            await asyncio.sleep(0.1)
        await self.wait_quiet(quiet_for=1.2, timeout=max(1.0, deadline - time.time()))

    async def jitter_buffer_totals(self) -> dict[str, tuple[float, int]]:
        """The avatar's tracks as received here: kind -> (seconds of jitter-buffer delay summed over what
        was played, how much was played), WebRTC's inbound-rtp counters; empty before the avatar's video.
        The mean delay over an interval is the difference of two readings' sums over that of their counts."""
        avatar = self.room.remote_participants.get(self.avatar_identity or "")
        if avatar is None:
            return {}
        out: dict[str, tuple[float, int]] = {}
        for pub in avatar.track_publications.values():
            if pub.track is None:
                continue
            for st in await pub.track.get_stats():
                if st.WhichOneof("stats") == "inbound_rtp":
                    inb = st.inbound_rtp.inbound
                    out[st.inbound_rtp.stream.kind] = (inb.jitter_buffer_delay, inb.jitter_buffer_emitted_count)
        return out

    async def leave(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self._streams:
            await s.aclose()
        await self.room.disconnect()
        if self._recorder is not None:
            self._recorder.close()
