"""Mint a caller token that dispatches the agent into a room (talk to it from any LiveKit client).

    python -m agent token [--room NAME] [--identity NAME] [--ttl-minutes 15]
"""

from __future__ import annotations

import argparse
import datetime
import os
import uuid

from .contract import CallDispatch, call_token
from .settings import AgentSettings


def caller_token(room: str, identity: str, *, ttl_minutes: float = 15, dispatch: CallDispatch | None = None) -> str:
    """A room-scoped join token whose room configuration dispatches the call agent (no ticket: the
    agent's default persona and knowledge, not recorded; the admin's token route gives one)."""
    return call_token(os.environ.get("LIVEKIT_API_KEY", "devkey"), os.environ.get("LIVEKIT_API_SECRET", "secret"),
                      room=room, identity=identity, agent_name=AgentSettings().agent_name,
                      dispatch=dispatch or CallDispatch(), ttl=datetime.timedelta(minutes=ttl_minutes))


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent token", description=__doc__)
    ap.add_argument("--room", default=f"call-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--identity", default="caller")
    ap.add_argument("--ttl-minutes", type=float, default=15)
    args = ap.parse_args(argv)
    url = os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880")
    print(f"url:   {url}\nroom:  {args.room}\ntoken: {caller_token(args.room, args.identity, ttl_minutes=args.ttl_minutes)}")
