"""Mint a caller token that dispatches the agent into a room (talk to it from any LiveKit client).

    python -m agent token [--room NAME] [--identity NAME] [--ttl-minutes 15]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import uuid

from livekit import api

from .settings import AgentSettings


def caller_token(room: str, identity: str, *, ttl_minutes: float = 15, metadata: dict | None = None) -> str:
    """A room-scoped join token whose room configuration dispatches the call agent."""
    s = AgentSettings()
    return (
        api.AccessToken(os.environ.get("LIVEKIT_API_KEY", "devkey"), os.environ.get("LIVEKIT_API_SECRET", "secret"))
        .with_identity(identity)
        .with_name(identity)
        .with_ttl(datetime.timedelta(minutes=ttl_minutes))
        .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True))
        .with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name=s.agent_name, metadata=json.dumps(metadata or {}))]
            )
        )
        .to_jwt()
    )


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent token", description=__doc__)
    ap.add_argument("--room", default=f"call-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--identity", default="caller")
    ap.add_argument("--ttl-minutes", type=float, default=15)
    args = ap.parse_args(argv)
    url = os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880")
    print(f"url:   {url}\nroom:  {args.room}\ntoken: {caller_token(args.room, args.identity, ttl_minutes=args.ttl_minutes)}")
