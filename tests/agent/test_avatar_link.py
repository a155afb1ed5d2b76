"""AvatarLink against a fake room: dispatch, join wait, routing of speech, fallback and clean-up.

The calls through a real livekit-server are in tests/agent/test_call.py and tests/reliability/; here
the room, the server API and the session are small stand-ins (duck-typed as the framework reads
them), so each path of the link is driven exactly and fast.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from livekit import rtc

from agent.avatar_link import AvatarLink, WatchedAvatarOutput
from agent.contract import AvatarDispatch, avatar_identity

ACTIVE = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE


class FakeLocal:
    identity = "agent-1"

    def __init__(self) -> None:
        self._rpc_handlers: dict[str, Any] = {}

    def register_rpc_method(self, name: str, handler: Any) -> None:
        self._rpc_handlers[name] = handler

    async def perform_rpc(self, **kw: Any) -> str:
        raise RuntimeError("no answer")


class FakeRoom(rtc.EventEmitter):
    name = "room-1"

    def __init__(self) -> None:
        super().__init__()
        self.local_participant = FakeLocal()
        self.remote_participants: dict[str, Any] = {}
        self.connection_state = rtc.ConnectionState.CONN_CONNECTED

    def isconnected(self) -> bool:
        return self.connection_state == rtc.ConnectionState.CONN_CONNECTED

    def avatar_joins(self, identity: str) -> Any:
        video = SimpleNamespace(kind=rtc.TrackKind.KIND_VIDEO, sid="TR_v", subscribed=False, track=None)
        p = SimpleNamespace(identity=identity, state=ACTIVE, kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
                            track_publications={"TR_v": video}, attributes={})
        self.remote_participants[identity] = p
        self.emit("participant_connected", p)
        self.emit("participant_active", p)
        self.emit("track_published", video, p)
        return p

    def avatar_leaves(self, identity: str) -> None:
        self.emit("participant_disconnected", self.remote_participants.pop(identity))


class FakeApi:
    def __init__(self, fail: bool = False) -> None:
        self.dispatches: list[Any] = []
        self.removed: list[Any] = []
        self.agent_dispatch = SimpleNamespace(create_dispatch=self._dispatch)
        self.room = SimpleNamespace(remove_participant=self._remove)
        self._fail = fail

    async def _dispatch(self, req: Any) -> None:
        if self._fail:
            raise ConnectionError("livekit API unreachable")
        self.dispatches.append(req)

    async def _remove(self, req: Any) -> None:
        self.removed.append(req)


class FakeOutput:
    def __init__(self) -> None:
        self.audio: Any = SimpleNamespace(next_in_chain=None, label="room track")  # the agent's own track
        self.tails: list[Any] = []

    def replace_audio_tail(self, tail: Any) -> None:
        self.tails.append(tail)
        self.audio = tail


class FakeSession(rtc.EventEmitter):
    def __init__(self) -> None:
        super().__init__()
        self.output = FakeOutput()
        self.agent_state = "listening"
        self.current_speech: Any = None
        self.interrupted = 0
        self.said: list[str] = []

    def interrupt(self, force: bool = False) -> None:
        self.interrupted += 1

    def say(self, text: str) -> None:
        self.said.append(text)


def _link(api: FakeApi | None = None, timeout: float = 2.0, **kw: Any) -> tuple[AvatarLink, FakeRoom, FakeApi]:
    room, api = FakeRoom(), api or FakeApi()
    ctx = SimpleNamespace(room=room, api=api)
    link = AvatarLink(ctx, avatar_agent_name="dh-avatar", join_timeout=timeout, sample_rate=16000,  # type: ignore[arg-type]
                      metadata={"avatar_id": "av-1", "engine": "portrait"}, **kw)
    return link, room, api


async def test_a_joined_avatar_gets_the_speech_and_leaves_the_room_at_the_end():
    link, room, api = _link()
    link.begin()  # dispatched before the session exists
    session = FakeSession()
    starting = asyncio.ensure_future(link.start(session, room))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert not starting.done() and len(api.dispatches) == 1  # one dispatch, waiting for the face
    req = api.dispatches[0]
    meta = AvatarDispatch.from_metadata(req.metadata)
    assert (req.agent_name, req.room) == ("dh-avatar", "room-1")
    assert (meta.agent_identity, meta.avatar_id, meta.engine) == ("agent-1", "av-1", "portrait")
    room.avatar_joins(avatar_identity("agent-1"))
    assert await asyncio.wait_for(starting, 2) is True
    assert link.joined_after is not None and link.avatar_identity == avatar_identity("agent-1")
    (tail,) = session.output.tails
    assert isinstance(tail, WatchedAvatarOutput)  # the agent's speech now goes to the avatar
    await link.aclose()
    assert "participant_disconnected" not in room._events or not room._events["participant_disconnected"]


async def test_an_avatar_that_never_joins_leaves_the_call_on_its_own_track():
    link, room, _ = _link(timeout=0.3)
    session = FakeSession()
    t0 = asyncio.get_running_loop().time()
    assert await link.start(session, room) is False  # type: ignore[arg-type]
    assert 0.25 < asyncio.get_running_loop().time() - t0 < 1.5
    assert session.output.tails == []  # nothing rerouted: the session speaks on the agent's track
    await link.aclose()


async def test_a_dispatch_that_fails_gives_audio_only_at_once():
    link, room, _ = _link(api=FakeApi(fail=True), timeout=5.0)
    session = FakeSession()
    assert await asyncio.wait_for(link.start(session, room), 1) is False  # type: ignore[arg-type]
    assert session.output.tails == []
    await link.aclose()


async def test_an_avatar_leaving_mid_answer_hands_the_speech_back_and_says_the_answer_again():
    link, room, api = _link(last_answer=lambda: "Our hotline is 0800 123 456.")
    session = FakeSession()
    starting = asyncio.ensure_future(link.start(session, room))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    room.avatar_joins(avatar_identity("agent-1"))
    assert await starting
    session.agent_state = "speaking"
    room.avatar_leaves(avatar_identity("agent-1"))
    watched, back = session.output.tails
    assert isinstance(watched, WatchedAvatarOutput) and back.label == "room track"
    assert session.interrupted == 1 and session.said == ["Our hotline is 0800 123 456."]  # unredacted, once
    room.avatar_joins(avatar_identity("agent-1"))
    room.avatar_leaves(avatar_identity("agent-1"))  # a second leave changes nothing
    assert len(session.output.tails) == 2 and session.said == ["Our hotline is 0800 123 456."]
    assert api.removed == []  # it left by itself: nothing to remove
    await link.aclose()


async def test_an_avatar_that_left_while_the_room_reconnects_is_waited_for():
    link, room, _ = _link()
    session = FakeSession()
    starting = asyncio.ensure_future(link.start(session, room))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    room.avatar_joins(avatar_identity("agent-1"))
    assert await starting
    room.connection_state = rtc.ConnectionState.CONN_RECONNECTING
    room.avatar_leaves(avatar_identity("agent-1"))
    await asyncio.sleep(0.1)
    assert len(session.output.tails) == 1  # not fallen back: the room is only reconnecting
    room.connection_state = rtc.ConnectionState.CONN_CONNECTED
    room.avatar_joins(avatar_identity("agent-1"))
    await asyncio.sleep(0.4)
    assert len(session.output.tails) == 1 and session.said == []
    await link.aclose()  # cancels what is still running; nothing left behind
    assert all(t.done() for t in asyncio.all_tasks() if "avatar_link" in repr(t.get_coro()))
