"""What the admin, the agent and the avatar worker tell each other through LiveKit, in one place.

* A caller's token dispatches the agent with :class:`CallDispatch` (an opaque call ticket and
  nothing else: the agent exchanges it with its own key, :mod:`agent.call_config`). The one
  minter of such tokens is :func:`call_token` (the admin's token routes, ``python -m agent token``).
* The agent dispatches the avatar worker with :class:`AvatarDispatch`. The avatar joins as
  :func:`avatar_identity` of the agent, with the framework's ``lk.publish_on_behalf`` attribute
  (``livekit.agents.types.ATTRIBUTE_PUBLISH_ON_BEHALF``; not imported here, so that the admin,
  which imports this module, does not load the agents framework).
* The agent streams its speech to the avatar as PCM at :data:`PCM_RATE`.
* While they share a call: the ``dh.avatar_ping`` RPC (the agent's watchdog asks the avatar whether
  it is playing) and the grace both give each other across a server restart (``REJOIN_WITHIN``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from livekit import api

__all__ = ["AVATAR_PREFIX", "AVATAR_STREAM", "PCM_RATE", "AvatarDispatch", "CallDispatch", "PING_RPC",
           "PLAYING_WITHIN", "REJOIN_WITHIN", "avatar_identity", "call_token"]

# The agent's speech on its way to the avatar, and the avatar's published audio: mono 16-bit PCM
# at this rate. One fact for both ends (the avatar resamples to its engine's own rate at its input).
PCM_RATE = 16000

AVATAR_PREFIX = "avatar-"
# The WebRTC stream the avatar publishes its audio and video in (with the room's ``sync_streams``, a
# subscriber receives both as one stream and lip-syncs them).
AVATAR_STREAM = "avatar"
# The avatar worker answers this RPC with {"speech_age": seconds since it last sent out a speech
# frame, or null}: the watchdog's proof of life when a segment's lk.playback_started is missing.
PING_RPC = "dh.avatar_ping"
PLAYING_WITHIN = 2.0  # s: an avatar that sent speech this recently is playing
# s: how long the agent and the avatar wait for each other when they lost sight of each other
# while their own connection was reconnecting (a livekit-server restart), before acting on it
REJOIN_WITHIN = 20.0


def avatar_identity(agent_identity: str) -> str:
    """The identity the avatar worker joins a call with, for the agent it publishes for."""
    return f"{AVATAR_PREFIX}{agent_identity}"


def _loads(raw: str | Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        meta = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise ValueError(f"{what} is not JSON") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{what} is not a JSON object")
    return meta


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


@dataclasses.dataclass(frozen=True)
class CallDispatch:
    """The agent's dispatch metadata in a caller's token (readable by the caller: no secret in it)."""

    ticket: str | None = None

    def to_metadata(self) -> str:
        return json.dumps({"ticket": self.ticket} if self.ticket else {})

    @classmethod
    def from_metadata(cls, raw: str | Mapping[str, Any] | None) -> CallDispatch:
        """Never raises: anything else (a hand-made token, a value of the wrong type) is no ticket."""
        try:
            meta = _loads(raw, "the call's dispatch metadata")
        except ValueError:
            return cls()
        return cls(ticket=_text(meta.get("ticket")))


@dataclasses.dataclass(frozen=True)
class AvatarDispatch:
    """The avatar worker's dispatch metadata (set by the agent through the LiveKit API; callers never see
    it). The face is fetched from the admin with the ticket, never read from a path."""

    agent_identity: str
    engine: str | None = None
    avatar_id: str | None = None
    revision: str | None = None
    ticket: str | None = None

    def to_metadata(self) -> str:
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v})

    @classmethod
    def from_metadata(cls, raw: str | Mapping[str, Any] | None) -> AvatarDispatch:
        meta = _loads(raw, "avatar dispatch metadata")
        if not _text(meta.get("agent_identity")):
            raise ValueError("avatar dispatch metadata must name the agent_identity to publish for")
        return cls(**{f.name: _text(meta.get(f.name)) for f in dataclasses.fields(cls)})


def call_token(key: str, secret: str, *, room: str, identity: str, agent_name: str, dispatch: CallDispatch,
               ttl: timedelta, name: str | None = None) -> str:
    """A caller's join token for one room, whose room configuration dispatches the call agent."""
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_name(name or identity)
        .with_ttl(ttl)
        .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                     can_publish_data=True))
        .with_room_config(api.RoomConfiguration(
            agents=[api.RoomAgentDispatch(agent_name=agent_name, metadata=dispatch.to_metadata())],
            # The room this join creates hands each subscriber a participant's audio and video in one
            # WebRTC stream (the avatar's ``AVATAR_STREAM``), so the caller's browser plays them in sync:
            # its audio jitter buffer grows under load, and without this the mouth runs ahead of the voice.
            sync_streams=True))
        .to_jwt()
    )
