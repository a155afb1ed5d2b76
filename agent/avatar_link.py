"""Puts the avatar worker into the call and routes the agent's speech to it.

The call never waits on the avatar: the session starts with its own audio
track; once the avatar's video track is up (within ``join_timeout``) the audio
tail is swapped to the data-stream avatar output, and if the avatar leaves
mid-call it is swapped back, so the caller always hears the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from livekit import api, rtc
from livekit.agents import AgentSession, JobContext, utils
from livekit.agents.voice.avatar import AvatarSession, DataStreamAudioOutput
from livekit.agents.voice.io import AudioOutput, _AudioSinkProxy

from .contract import PING_RPC, PLAYING_WITHIN, REJOIN_WITHIN, AvatarDispatch, avatar_identity

logger = logging.getLogger("agent.avatar")


def reconnecting(room: rtc.Room) -> bool:
    """Whether ``room``'s own connection is down or being re-established just now: a participant
    that "left" at such a moment may only be rejoining the server with us."""
    return room.connection_state != rtc.ConnectionState.CONN_CONNECTED


async def rejoined(room: rtc.Room, identity: str, within: float = REJOIN_WITHIN) -> bool:
    """Wait until ``room`` is connected again with ``identity`` in it (True), or ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if room.connection_state == rtc.ConnectionState.CONN_CONNECTED and identity in room.remote_participants:
            return True
        if room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED:
            return False
        await asyncio.sleep(0.2)
    return False


class WatchedAvatarOutput(DataStreamAudioOutput):
    """The data-stream avatar output with a watchdog on the avatar's answer.

    A crashed avatar can stay "in the room" for tens of seconds until the server times it
    out, while the agent's speech goes nowhere. Every segment must be answered by
    ``lk.playback_started`` within ``stall_timeout``; otherwise ``on_stall`` is called.
    """

    def __init__(self, *args: Any, stall_timeout: float, on_stall: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._started = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        new_segment = self._stream_writer is None
        await super().capture_frame(frame)
        if new_segment and (self._watch is None or self._watch.done()):
            self._started.clear()
            self._watch = asyncio.create_task(self._watchdog())

    def on_playback_started(self, *, created_at: float) -> None:
        self._started.set()
        super().on_playback_started(created_at=created_at)

    async def _watchdog(self) -> None:
        try:
            await asyncio.wait_for(self._started.wait(), self._stall_timeout)
        except TimeoutError:
            if await self._avatar_playing():
                # its playback_started went missing (seen after a barge-in under load), not the avatar
                logger.warning("no playback_started from the avatar within %.1f s, but it is playing: keeping it",
                               self._stall_timeout)
                return
            self._on_stall(f"no playback from the avatar within {self._stall_timeout:.1f} s")

    async def _avatar_playing(self) -> bool:
        """Ask the avatar whether it sent speech out in the last PLAYING_WITHIN seconds (1.5 s to answer)."""
        try:
            # the RPC's own acknowledgement wait is ~7 s: bound the whole question
            raw = await asyncio.wait_for(self._room.local_participant.perform_rpc(
                destination_identity=self._destination_identity, method=PING_RPC, payload="", response_timeout=1.5),
                timeout=1.5)
            age = json.loads(raw).get("speech_age")
        except Exception:  # no answer: stalled, gone, or an avatar without the ping
            return False
        return age is not None and age < PLAYING_WITHIN


def audio_tail(session: AgentSession) -> AudioOutput | None:
    """The sink at the bottom of the session's audio chain (below the transcript synchroniser)."""
    cur = session.output.audio
    while cur is not None:
        if isinstance(cur, _AudioSinkProxy):
            return cur.next_in_chain
        cur = cur.next_in_chain
    return session.output.audio


class AvatarLink(AvatarSession):
    """Dispatches the avatar worker for this room and keeps the audio routed to whoever can play it.

    The framework's :class:`AvatarSession` gives the join wait (``wait_for_join``), the avatar's
    metrics (join time, playback latency, as ``metrics_collected``) and the clean-up at the job's
    end (``aclose``: the avatar is removed from the room). This class adds the early dispatch
    (:meth:`begin`, before the session exists), the routing of the agent's speech, and the
    fallback to the agent's own track when the avatar fails.
    """

    def __init__(
        self,
        ctx: JobContext,
        *,
        avatar_agent_name: str,
        join_timeout: float,
        sample_rate: int,
        stall_timeout: float = 5.0,
        last_answer: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._agent_name = avatar_agent_name
        self._timeout = join_timeout
        self._stall_timeout = stall_timeout
        self._last_answer = last_answer  # () -> str | None: the answer to say again after a failure
        self._sample_rate = sample_rate
        self._metadata = metadata or {}
        self.identity = avatar_identity(ctx.room.local_participant.identity)
        self.joined_after: float | None = None  # seconds from dispatch to the avatar's video track
        self._session: AgentSession | None = None
        self._room_tail: AudioOutput | None = None
        self._avatar_out: DataStreamAudioOutput | None = None
        self._joining: asyncio.Future[bool] | None = None
        self._removal: asyncio.Future[None] | None = None
        self._rejoin: asyncio.Future[None] | None = None
        self._dispatched_at: float | None = None

    @property
    def avatar_identity(self) -> str:
        return self.identity

    @property
    def provider(self) -> str:
        return "dh-avatar"

    def begin(self) -> None:
        """Dispatch the avatar now, before the session exists: it joins while the call is prepared."""
        if self._joining is None:
            self._joining = asyncio.ensure_future(self._join())

    async def _join(self) -> bool:
        room = self._ctx.room
        meta = AvatarDispatch(agent_identity=room.local_participant.identity, **self._metadata).to_metadata()
        self._dispatched_at = time.perf_counter()
        try:
            await self._ctx.api.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=self._agent_name, room=room.name, metadata=meta)
            )
        except Exception:
            logger.exception("could not dispatch the avatar: the call goes on with audio only")
            return False
        return True

    async def start(self, agent_session: AgentSession, room: rtc.Room | None = None) -> bool:  # type: ignore[override]
        """Wait for the avatar's video (dispatching it unless :meth:`begin` did); True if the call
        now speaks through it."""
        room = room or self._ctx.room
        await super().start(agent_session, room)
        self._session = agent_session
        self.begin()
        assert self._joining is not None
        if not await self._joining:
            return False
        assert self._dispatched_at is not None
        left = max(0.0, self._timeout - (time.perf_counter() - self._dispatched_at))
        try:
            await self.wait_for_join(timeout=left)
        except TimeoutError:
            logger.warning(
                "avatar %r did not join within %.1f s: the call goes on with audio only",
                self._agent_name, self._timeout,
            )
            return False
        if self.identity not in room.remote_participants:
            logger.warning("avatar %r is not in the call: the call goes on with audio only", self._agent_name)
            return False
        self.joined_after = time.perf_counter() - self._dispatched_at
        logger.info("avatar joined in %.2f s", self.joined_after)

        self._room_tail = audio_tail(agent_session)
        self._avatar_out = WatchedAvatarOutput(
            room,
            destination_identity=self.identity,
            sample_rate=self._sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            wait_playback_start=True,
            stall_timeout=self._stall_timeout,
            on_stall=self._fall_back,
        )
        agent_session.output.replace_audio_tail(self._avatar_out)
        room.on("participant_disconnected", self._on_participant_disconnected)
        return True

    async def aclose(self) -> None:
        """End of the call: stop watching, and let the framework take the avatar out of the room."""
        room = self._ctx.room
        room.off("participant_disconnected", self._on_participant_disconnected)
        watch = self._avatar_out._watch if isinstance(self._avatar_out, WatchedAvatarOutput) else None
        await utils.aio.cancel_and_wait(*(t for t in (watch, self._rejoin, self._removal, self._joining) if t is not None))
        self._session = None
        await super().aclose()

    def _on_participant_disconnected(self, p: rtc.RemoteParticipant) -> None:
        if p.identity != self.identity:
            return
        if reconnecting(self._ctx.room):
            logger.warning("lost avatar %s while the room reconnects: waiting up to %.0f s for it", self.identity,
                           REJOIN_WITHIN)
            self._rejoin = asyncio.ensure_future(self._await_rejoin())
        else:
            self._fall_back("the avatar left the call")

    async def _await_rejoin(self) -> None:
        if await rejoined(self._ctx.room, self.identity):
            logger.info("avatar %s is back after the room reconnected", self.identity)
        else:
            self._fall_back("the avatar left the call")

    def _fall_back(self, why: str) -> None:
        """Speak on the agent's own track from now on; an answer the avatar swallowed is said again."""
        if self._session is None or self._room_tail is None:
            return
        session, tail = self._session, self._room_tail
        self._room_tail = None  # once
        logger.error("avatar %s failed (%s): switching to audio only", self.identity, why)
        self._ctx.room.off("participant_disconnected", self._on_participant_disconnected)
        lost_answer = session.agent_state == "speaking" or session.current_speech is not None
        session.interrupt(force=True)
        session.output.replace_audio_tail(tail)
        text = self._last_answer() if (lost_answer and self._last_answer) else None
        if text:
            session.say(text)
        if why != "the avatar left the call":
            # a stalled avatar would come back as a face that no longer moves with the voice: out of the call
            self._removal = asyncio.ensure_future(self._remove_avatar())

    async def _remove_avatar(self) -> None:
        try:
            await self._ctx.api.room.remove_participant(
                api.RoomParticipantIdentity(room=self._ctx.room.name, identity=self.identity))
            logger.info("removed the stalled avatar %s from the call", self.identity)
        except Exception as exc:  # already gone, or the server refused: the call goes on either way
            logger.warning("could not remove the avatar %s: %s", self.identity, exc)
