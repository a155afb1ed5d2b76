"""The live handoff queue: calls whose caller asked for (or needs) a person.

The agent puts a call in its organisation's queue when the policy hands over
(``handoff`` recorder events, :mod:`agent.handoff`); operators see it here -- listed, or
live as server-sent events -- and one accepts: the route answers with a LiveKit token for that
room under the operator's own identity (``operator-…``, a prefix no caller token may carry).
When the operator is in the room the agent stops answering and transcribes both sides for the
record; when they leave, the agent takes the call back.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from livekit import api as lk
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import crud
from admin.api.deps import EDITORS, READERS, Principal, SessionDep, require
from admin.core import audit
from admin.core.config import get_settings
from admin.core.db import session_scope
from admin.models import CallSession, Handoff, Turn, User, utcnow
from admin.schemas import HandoffAcceptOut, HandoffOut, UtcDatetime

router = APIRouter(prefix="/handoffs", tags=["handoffs"])
Watchers = Annotated[Principal, Depends(require(*READERS))]
Takers = Annotated[Principal, Depends(require(*EDITORS))]
OPERATOR_PREFIX = "operator-"  # LiveKit identities of the people who take calls over
OPEN = ("waiting", "accepted")


def _out(db: Session, h: Handoff, *, transcript: bool = True) -> HandoffOut:
    now = utcnow()
    waited = ((h.accepted_at or h.ended_at or now) - h.requested_at).total_seconds()
    s = db.get(CallSession, h.session_id)
    turns = []
    if transcript:
        rows = db.scalars(select(Turn).where(Turn.session_id == h.session_id).order_by(Turn.seq, Turn.started_at))
        turns = [{"speaker": t.speaker, "text": t.text, "at": t.started_at.isoformat() if t.started_at else None}
                 for t in rows]
    taker = db.get(User, h.accepted_by) if h.accepted_by else None
    return HandoffOut(
        id=h.id, session_id=h.session_id, room=h.room, status=h.status, reason=h.reason, summary=h.summary,
        requested_at=h.requested_at, accepted_at=h.accepted_at, accepted_by=h.accepted_by,
        accepted_by_name=(taker.full_name or taker.email) if taker is not None and taker.tenant_id == h.tenant_id else None,
        operator_joined_at=h.operator_joined_at, ended_at=h.ended_at, waiting_seconds=round(max(0.0, waited), 2),
        avatar_id=s.avatar_id if s else None, caller_identity=s.caller_identity if s else None, transcript=turns,
    )


@router.get("", response_model=list[HandoffOut])
def list_handoffs(db: SessionDep, principal: Watchers,
                  state: Literal["open", "waiting", "accepted", "returned", "unanswered", "closed", "all"] = "open",
                  limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  before: Annotated[UtcDatetime | None, Query(description="only handoffs asked for before this time")] = None,
                  transcript: bool = True) -> list[HandoffOut]:
    """The organisation's handoffs, newest first (``open``: waiting or taken over now; ``closed``: handed
    back or nobody came, the history). ``before`` pages back through them (the last ``requested_at``);
    ``transcript=false`` leaves the calls' turns out."""
    q = select(Handoff).where(Handoff.tenant_id == principal.tenant_id)
    if state == "open":
        q = q.where(Handoff.status.in_(OPEN))
    elif state == "closed":
        q = q.where(Handoff.status.not_in(OPEN))
    elif state != "all":
        q = q.where(Handoff.status == state)
    if before is not None:
        q = q.where(Handoff.requested_at < before)
    return [_out(db, h, transcript=transcript) for h in db.scalars(q.order_by(Handoff.requested_at.desc()).limit(limit))]


def _changes(tenant_id: str, since: datetime) -> tuple[list[dict], datetime]:
    with session_scope() as db:
        rows = list(db.scalars(select(Handoff).where(Handoff.tenant_id == tenant_id, Handoff.updated_at > since)
                               .order_by(Handoff.updated_at)))
        out = [json.loads(_out(db, h).model_dump_json()) for h in rows]
        return out, (rows[-1].updated_at if rows else since)


@router.get("/stream", responses={200: {"content": {"text/event-stream": {}}}})
async def stream_handoffs(request: Request, principal: Watchers,
                          poll: Annotated[float, Query(ge=0.2, le=5.0)] = 0.5,
                          seconds: Annotated[float, Query(ge=1, le=600)] = 600) -> StreamingResponse:
    """Server-sent events: ``event: handoff`` with the handoff as JSON each time one changes (first
    every open one). The stream ends after ``seconds`` (10 minutes); EventSource reconnects by itself."""
    tenant_id = principal.tenant_id

    async def events() -> AsyncIterator[bytes]:
        since = utcnow() - timedelta(days=3650)
        first, quiet, end = True, 0.0, asyncio.get_running_loop().time() + seconds
        yield b"retry: 2000\n\n"
        while asyncio.get_running_loop().time() < end and not await request.is_disconnected():
            changed, since = await run_in_threadpool(_changes, tenant_id, since)
            for h in changed:
                if first and h["status"] not in OPEN:
                    continue  # the past is in GET /handoffs?state=all
                yield f"event: handoff\nid: {h['id']}\ndata: {json.dumps(h)}\n\n".encode()
            first = False
            quiet = 0.0 if changed else quiet + poll
            if quiet >= 15:
                yield b": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(poll)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/{handoff_id}/accept", response_model=HandoffAcceptOut)
def accept_handoff(handoff_id: str, db: SessionDep, principal: Takers) -> HandoffAcceptOut:
    """Take the call: one operator per handoff (409 once taken or when the caller no longer waits)."""
    h = crud.get_owned(db, Handoff, handoff_id, principal.tenant_id, what="handoff")
    if h.status != "waiting":
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "Someone has already taken this call." if h.status == "accepted"
                            else f"The caller is no longer waiting ({h.status}).")
    if not h.room:
        raise HTTPException(status.HTTP_409_CONFLICT, "This call has no room to join.")
    s = get_settings()
    user = db.get(User, principal.id) if principal.kind == "user" else None
    name = (user.full_name or user.email) if user else f"operator {principal.id[:8]}"
    identity = f"{OPERATOR_PREFIX}{principal.id[:8]}-{secrets.token_hex(3)}"
    ttl = min(600, s.max_token_ttl_seconds)
    token = (
        lk.AccessToken(s.livekit_api_key, s.livekit_api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_ttl(timedelta(seconds=ttl))
        .with_attributes({"dh.role": "operator"})
        .with_grants(lk.VideoGrants(room_join=True, room=h.room, can_publish=True, can_subscribe=True,
                                    can_publish_data=True))
        .to_jwt()
    )
    now = utcnow()
    h.status, h.accepted_at, h.accepted_by, h.updated_at = "accepted", now, principal.id, now
    audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="accept_handoff",
                 resource="handoff", resource_id=h.id, changes={"room": h.room, "identity": identity})
    db.commit()
    return HandoffAcceptOut(server_url=s.livekit_url, token=token, room=h.room, identity=identity,
                            expires_at=now + timedelta(seconds=ttl), handoff=_out(db, h))
