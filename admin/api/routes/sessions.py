"""Calls and their turns: list, filter, detail, export (JSON, CSV), and the
idempotent event intake used by the agent's durable recorder."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from admin import crud
from admin.api.deps import Principal, Readers, SessionDep, require
from admin.api.routes.health import EVENTS
from admin.core import audit
from admin.core.security import GrantError, verify_session_grant
from admin.models import Avatar, CallSession, Handoff, IngestedEvent, Persona, Role, Tenant, Turn, utcnow
from admin.schemas import (
    EventBatch,
    EventResult,
    HandoffIn,
    Offset,
    SessionDetail,
    SessionEnd,
    SessionOut,
    SessionPage,
    SessionStart,
    TurnIn,
    UtcDatetime,
)
from admin.worker import enqueue, postprocess_session_task
from dialogue.guardrails import redact, redact_obj

logger = logging.getLogger("admin.sessions")
router = APIRouter(tags=["sessions"])
Recorders = Annotated[Principal, Depends(require(Role.agent, Role.admin))]


class SessionFilters:
    """Query filters shared by the list and the export."""

    def __init__(
        self,
        avatar_id: str | None = None,
        outcome: str | None = None,
        escalated: bool | None = None,
        room: str | None = None,
        since: UtcDatetime | None = Query(None, description="started at or after (ISO 8601)"),
        until: UtcDatetime | None = Query(None, description="started before (ISO 8601)"),
    ) -> None:
        self.avatar_id, self.outcome, self.escalated = avatar_id, outcome, escalated
        self.room, self.since, self.until = room, since, until

    def apply(self, q: Select, tenant_id: str) -> Select:
        """Restrict ``q`` to the tenant and the filters."""
        q = q.where(CallSession.tenant_id == tenant_id)
        if self.avatar_id:
            q = q.where(CallSession.avatar_id == self.avatar_id)
        if self.outcome:
            q = q.where(CallSession.outcome == self.outcome)
        if self.escalated is not None:
            q = q.where(CallSession.escalated == self.escalated)
        if self.room:
            q = q.where(CallSession.room == redact(self.room))  # rooms are stored redacted
        if self.since:
            q = q.where(CallSession.started_at >= self.since)
        if self.until:
            q = q.where(CallSession.started_at < self.until)
        return q


Filters = Annotated[SessionFilters, Depends()]


@router.get("/sessions", response_model=SessionPage)
def list_sessions(
    db: SessionDep, principal: Readers, filters: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0,
) -> SessionPage:
    """Calls of the organisation, newest first, with filters."""
    q = filters.apply(select(CallSession), principal.tenant_id)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(q.order_by(CallSession.started_at.desc()).limit(limit).offset(offset))
    return SessionPage(items=[SessionOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


EXPORT_FIELDS = [
    "session_id", "room", "avatar_id", "started_at", "ended_at", "outcome", "escalated",
    "turn_seq", "speaker", "language", "text", "interrupted", "citations", "tool_calls", "latency",
]


@router.get("/sessions/export")
def export_sessions(
    db: SessionDep, principal: Readers, filters: Filters,
    format: Literal["json", "csv"] = "json",  # noqa: A002
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> StreamingResponse:
    """Calls with their (redacted) turns as JSON, or one CSV row per turn."""
    q = (filters.apply(select(CallSession), principal.tenant_id)
         .options(selectinload(CallSession.turns)).order_by(CallSession.started_at.desc()).limit(limit))
    sessions = list(db.scalars(q))
    if format == "json":
        body = json.dumps([SessionDetail.model_validate(s).model_dump(mode="json") for s in sessions], ensure_ascii=False)
        return StreamingResponse(iter([body]), media_type="application/json",
                                 headers={"Content-Disposition": 'attachment; filename="sessions.json"'})

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(EXPORT_FIELDS)
        for s in sessions:
            for t in s.turns or [None]:
                w.writerow([_csv_safe(v) for v in [
                    s.id, s.room or "", s.avatar_id or "", s.started_at.isoformat(),
                    s.ended_at.isoformat() if s.ended_at else "", s.outcome or "", s.escalated,
                    *(["", "", "", "", "", "", "", ""] if t is None else [
                        t.seq, t.speaker, t.language or "", t.text, t.interrupted,
                        json.dumps(t.citations, ensure_ascii=False), json.dumps(t.tool_calls or [], ensure_ascii=False),
                        json.dumps(t.latency),
                    ]),
                ]])
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        if not sessions:
            yield buf.getvalue()

    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="sessions.csv"'})


def _csv_safe(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading quote
    (CSV injection). Applied to every text cell, whatever column it is in."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/sessions/stats")
def session_stats(
    db: SessionDep, principal: Readers, filters: Filters,
    max_turns: Annotated[int, Query(ge=1, le=200_000)] = 50_000,
) -> dict[str, Any]:
    """Outcome counts, escalation rate and per-stage latency percentiles (p50, p90, p95) of the matching calls."""
    q = filters.apply(select(CallSession.id, CallSession.outcome, CallSession.escalated), principal.tenant_id)
    rows = db.execute(q).all()
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r.outcome or "open"] = outcomes.get(r.outcome or "open", 0) + 1
    ids = filters.apply(select(CallSession.id), principal.tenant_id).scalar_subquery()
    lat_rows = db.scalars(
        select(Turn.latency).where(Turn.tenant_id == principal.tenant_id, Turn.session_id.in_(ids))
        .order_by(Turn.created_at.desc()).limit(max_turns)
    )
    stages: dict[str, list[float]] = {}
    for lat in lat_rows:
        for k, v in (lat or {}).items():
            if isinstance(v, (int, float)):
                stages.setdefault(k, []).append(float(v))
    return {
        "sessions": len(rows),
        "outcomes": outcomes,
        "escalation_rate": (sum(1 for r in rows if r.escalated) / len(rows)) if rows else None,
        "latency": {k: _percentiles(v) for k, v in sorted(stages.items())},
    }


def _percentiles(values: list[float]) -> dict[str, float | int]:
    values = sorted(values)

    def pick(p: float) -> float:
        return values[min(len(values) - 1, max(0, round(p * (len(values) - 1))))]

    return {"count": len(values), "p50": pick(0.5), "p90": pick(0.9), "p95": pick(0.95), "max": values[-1]}


@router.get("/sessions/{session_id}", response_model=SessionDetail)
def read_session(session_id: str, db: SessionDep, principal: Readers) -> CallSession:
    """One call with all its turns."""
    crud.get_owned(db, CallSession, session_id, principal.tenant_id, what="session")
    return db.scalars(
        select(CallSession).where(CallSession.id == session_id).options(selectinload(CallSession.turns))
    ).one()


# --- intake from the agent ----------------------------------------------------------------
@router.post("/agent/events", response_model=EventResult)
def ingest_events(batch: EventBatch, db: SessionDep, principal: Recorders) -> EventResult:
    """Apply recorder events exactly once: each ``event_id`` is remembered, a redelivery is a no-op.

    An agent key records an event only with the call's ``grant`` (minted with its LiveKit token),
    and only into the organisation and session the grant names. Events that can never be applied
    (malformed, no or a wrong grant, another organisation's session) are remembered too, so the
    recorder does not retry them forever.
    """
    for attempt in range(3):
        try:
            result, ended, touched = _apply(db, principal, batch)
            for tenant_id, sessions in touched.items():
                audit.record(db, tenant_id=tenant_id, actor=principal.actor, action="record",
                             resource="session", resource_id=sessions[0] if len(sessions) == 1 else None,
                             changes={"sessions": sessions, "applied": result.applied,
                                      "event_ids": [e.event_id for e in batch.events]})
            db.commit()
            break
        except IntegrityError:
            # A concurrent delivery of the same events won the race: re-run and see them as duplicates.
            db.rollback()
            if attempt == 2:
                raise
    for session_id in ended:
        enqueue(postprocess_session_task, session_id)
    return result


def _event_tenant(db: Session, principal: Principal, grant: str | None, session_id: Any) -> str:
    """The organisation an event is recorded in: the one its grant names (agent keys must send one)."""
    if not isinstance(session_id, str):
        raise _Rejected("no session id")
    if grant is None:
        if principal.role == Role.agent:
            raise _Rejected("no session grant (agent keys record a call only with its grant)")
        return principal.tenant_id
    try:
        tenant_id = verify_session_grant(grant, session_id)
    except GrantError as exc:
        raise _Rejected(str(exc)) from None
    if principal.role != Role.agent and tenant_id != principal.tenant_id:
        raise _Rejected("session grant of another organisation")
    tenant = db.get(Tenant, tenant_id)
    if tenant is None or not tenant.is_active:
        raise _Rejected("session grant of an inactive organisation")
    return tenant_id


def _apply(db: Session, principal: Principal, batch: EventBatch) -> tuple[EventResult, list[str], dict[str, list[str]]]:
    applied = duplicates = 0
    ended: list[str] = []
    touched: dict[str, list[str]] = {}
    seen: set[str] = set()
    for ev in batch.events:
        if ev.event_id in seen or db.get(IngestedEvent, ev.event_id) is not None:
            duplicates += 1
            continue
        seen.add(ev.event_id)
        tenant_id = principal.tenant_id
        try:
            tenant_id = _event_tenant(db, principal, ev.grant, ev.payload.get("session_id"))
            if ev.type == "session_start":
                _start(db, tenant_id, SessionStart.model_validate(ev.payload))
            elif ev.type == "turn":
                _turn(db, tenant_id, TurnIn.model_validate(ev.payload), ev.event_id)
            elif ev.type == "handoff":
                _handoff(db, tenant_id, HandoffIn.model_validate(ev.payload))
            else:
                end = SessionEnd.model_validate(ev.payload)
                if _end(db, tenant_id, end):
                    ended.append(end.session_id)
            applied += 1
            sessions = touched.setdefault(tenant_id, [])
            if ev.payload["session_id"] not in sessions:
                sessions.append(ev.payload["session_id"])
        except ValidationError as exc:
            # Never the message: pydantic's text echoes the input (a card number in a turn).
            fields = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors(include_input=False))
            logger.warning("rejected recorder event %s (%s): invalid %s", ev.event_id, ev.type, fields)
        except _Rejected as exc:
            logger.warning("rejected recorder event %s (%s): %s", ev.event_id, ev.type, exc)
        db.add(IngestedEvent(id=ev.event_id, tenant_id=tenant_id, kind=ev.type))
        db.flush()
    EVENTS.labels("applied").inc(applied)
    EVENTS.labels("duplicate").inc(duplicates)
    return EventResult(applied=applied, duplicates=duplicates), ended, touched


class _Rejected(Exception):
    pass


def _owned_or_none(db: Session, model: type, obj_id: str | None, tenant_id: str) -> str | None:
    if not obj_id:
        return None
    obj = db.get(model, obj_id)
    return obj_id if obj is not None and obj.tenant_id == tenant_id else None


def _session(db: Session, tenant_id: str, session_id: str, *, create: bool) -> CallSession | None:
    s = db.get(CallSession, session_id)
    if s is not None and s.tenant_id != tenant_id:
        raise _Rejected(f"session {session_id} belongs to another organisation")
    if s is None and create:
        s = CallSession(id=session_id, tenant_id=tenant_id, started_at=utcnow(), meta={})
        db.add(s)
        db.flush()
    return s


def _start(db: Session, tenant_id: str, p: SessionStart) -> None:
    s = _session(db, tenant_id, p.session_id, create=True)
    assert s is not None
    s.avatar_id = _owned_or_none(db, Avatar, p.avatar_id, tenant_id) or s.avatar_id
    s.persona_id = _owned_or_none(db, Persona, p.persona_id, tenant_id) or s.persona_id
    s.room = redact(p.room) if p.room else s.room
    s.caller_identity = redact(p.caller_identity) if p.caller_identity else s.caller_identity
    if p.started_at:
        s.started_at = p.started_at
    s.meta = redact_obj({**(s.meta or {}), **p.meta})


def _turn(db: Session, tenant_id: str, p: TurnIn, event_id: str) -> None:
    s = _session(db, tenant_id, p.session_id, create=True)
    assert s is not None
    turn_id = p.turn_id or event_id
    if db.get(Turn, turn_id) is not None:
        return  # the same turn sent under another event id: keep the first
    db.add(Turn(
        id=turn_id, tenant_id=tenant_id, session_id=s.id, seq=p.seq, speaker=p.speaker,
        text=redact(p.text), language=redact(p.language) if p.language else None, interrupted=p.interrupted,
        citations=redact_obj(p.citations),
        tool_calls=[redact_obj(c.model_dump()) for c in p.tool_calls], latency={k: v for k, v in p.latency.items() if v is not None},
        started_at=p.started_at, ended_at=p.ended_at,
    ))


def _handoff(db: Session, tenant_id: str, p: HandoffIn) -> None:
    """The agent's side of a handoff: asked for (waiting), a person joined, handed back, nobody came."""
    s = _session(db, tenant_id, p.session_id, create=True)
    assert s is not None
    at = p.at or utcnow()
    h = db.scalar(select(Handoff).where(Handoff.session_id == s.id))
    if h is None:
        h = Handoff(tenant_id=tenant_id, session_id=s.id, requested_at=at, status="waiting")
        db.add(h)
    if p.state == "waiting":
        # asked again after a hand-back: a new wait. The room is the address an operator's token is
        # minted for, so it is kept as the agent reported it (a redacted "room-[PHONE]" would send
        # the colleague to an empty room) -- only while someone may still join: see _close_handoff.
        h.room = p.room or h.room or s.room
        h.status, h.requested_at, h.accepted_at, h.accepted_by, h.operator_joined_at, h.ended_at = \
            "waiting", at, None, None, None, None
        h.reason = redact(p.reason) if p.reason else h.reason
        h.summary = redact(p.summary) if p.summary else h.summary
    elif p.state == "accepted":  # the colleague is in the room (the accept route set who)
        h.status, h.operator_joined_at = "accepted", at
        h.accepted_at = h.accepted_at or at
    else:
        h.status, h.ended_at = p.state, at
        _close_handoff(h)
    h.updated_at = utcnow()
    s.escalated = True
    s.escalation_reason = s.escalation_reason or (redact(p.reason) if p.reason else None)
    db.flush()


def _close_handoff(h: Handoff) -> None:
    """Nobody joins a handoff that has ended: its room goes to rest redacted, like the call's."""
    h.room = redact(h.room) if h.room else h.room


def _end(db: Session, tenant_id: str, p: SessionEnd) -> bool:
    s = _session(db, tenant_id, p.session_id, create=True)
    assert s is not None
    h = db.scalar(select(Handoff).where(Handoff.session_id == s.id))
    if h is not None:
        _close_handoff(h)
    s.ended_at = p.ended_at or utcnow()
    s.outcome = "escalated" if p.escalated and p.outcome in (None, "completed") else p.outcome
    s.escalated = p.escalated
    s.escalation_reason = redact(p.escalation_reason) if p.escalation_reason else None
    s.meta = redact_obj({**(s.meta or {}), **p.meta})
    s.post_status = "pending"
    return True
