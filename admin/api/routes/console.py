"""Routes the web console (console/, served at /console/) needs beyond the resource routes:
cookie sign-in and sign-out, the current session, a platform administrator's choice of organisation, a test call with
an avatar (the widget at /test-call.html), a knowledge-base search ("try a question")
and daily insights (calls, outcomes, latency, unanswered questions). The cookie session itself
is :mod:`admin.api.browser_session`."""

from __future__ import annotations

import re
import secrets
import string
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from admin import crud
from admin.api import browser_session
from admin.api.deps import READERS, Principal, Readers, SessionDep, require
from admin.api.routes import login as login_routes
from admin.api.routes import tokens
from admin.core import audit
from admin.models import (
    Avatar,
    CallSession,
    Document,
    DocumentChunk,
    JobStatus,
    KnowledgeBase,
    Persona,
    Role,
    Tenant,
    Turn,
    User,
    utcnow,
)
from admin.schemas import CallTokenOut, CallTokenRequest, In, TenantOut, UserOut, UtcDatetime
from dialogue.templates import PHRASES

router = APIRouter(tags=["console"])
KbReaders = Annotated[Principal, Depends(require(*READERS, Role.agent))]
Superuser = Annotated[Principal, Depends(require(superuser=True))]
Callers = Annotated[Principal, Depends(require(Role.admin, Role.operator))]


class ConsoleSession(BaseModel):
    """The signed-in person as the console sees them."""

    user: UserOut
    is_superuser: bool
    csrf_token: str
    idle_timeout_seconds: int
    # the organisation the console acts on: the user's own, or the one a superuser chose (POST /console/tenant)
    tenant: TenantOut


def _session_out(db: Session, user: User, tenant_id: str, csrf: str) -> ConsoleSession:
    return ConsoleSession(user=UserOut.model_validate(user), is_superuser=user.is_superuser, csrf_token=csrf,
                          idle_timeout_seconds=round(browser_session.idle_minutes() * 60),
                          tenant=TenantOut.model_validate(db.get(Tenant, tenant_id)))


@router.post("/console/login", response_model=ConsoleSession)
def console_login(
    request: Request, response: Response, db: SessionDep,
    username: Annotated[str, Form()], password: Annotated[str, Form()],
) -> ConsoleSession:
    """Sign in with e-mail and password; sets the HttpOnly session cookie and the CSRF cookie.

    Same checks, audit entries and failed-login throttle as ``POST /login/access-token``.
    """
    browser_session.refuse_cross_site(request)  # no login CSRF from another site's page
    issued = login_routes.login(request, db, username, password)
    csrf, _ = browser_session.start(request, response, db, issued.access_token)
    user = db.scalar(select(User).where(func.lower(User.email) == username.strip().lower()))
    return _session_out(db, user, user.tenant_id, csrf)


@router.get("/console/session", response_model=ConsoleSession)
def console_session(request: Request, db: SessionDep, principal: Readers) -> ConsoleSession:
    """Who is signed in (401 when the session is over)."""
    user = db.get(User, principal.id) if principal.kind == "user" else None
    if user is None:
        raise HTTPException(404, "API keys have no console session.")
    token = request.cookies.get(browser_session.SESSION_COOKIE) or ""
    return _session_out(db, user, principal.tenant_id, browser_session.csrf_for(token) if token else "")


class TenantChoice(In):
    """The organisation the console should act on."""

    tenant_id: str = Field(min_length=1, max_length=36)


@router.post("/console/tenant", response_model=ConsoleSession)
def choose_tenant(body: TenantChoice, request: Request, response: Response, db: SessionDep,
                  principal: Superuser) -> ConsoleSession:
    """Act on another organisation in this console session (platform administrators only; CSRF-checked like
    every write). From the next request on, every organisation-scoped route of this session sees that
    organisation; choosing one's own ends it. Audited in the organisation chosen. Bearer tokens and API keys
    are not affected (they always act on their own organisation)."""
    token = getattr(request.state, "console_token", None)
    if principal.kind != "user" or not token:
        raise HTTPException(400, "Only a console session (a browser signed in at /console/) chooses an organisation.")
    target = db.get(Tenant, body.tenant_id)
    if target is None:
        raise HTTPException(404, "No such organisation.")
    user = db.get(User, principal.id)
    browser_session.choose_tenant(request, response, token, None if target.id == user.tenant_id else target.id)
    if target.id != principal.tenant_id:
        audit.record(db, tenant_id=target.id, actor=principal.actor, action="switch_tenant", resource="tenant",
                     resource_id=target.id, changes={"from": principal.tenant_id, "home": user.tenant_id})
        db.commit()
    return _session_out(db, user, target.id, browser_session.csrf_for(token))


class TestCallRequest(In):
    """The avatar to try."""

    avatar_id: str = Field(min_length=1, max_length=64)


@router.post("/console/test-call", response_model=CallTokenOut, status_code=201)
def console_test_call(body: TestCallRequest, request: Request, db: SessionDep, principal: Callers) -> CallTokenOut:
    """A caller's token for a test call with one of the organisation's avatars (admin, operator; CSRF-checked
    like every write), minted exactly as ``POST /tokens/livekit`` mints a real caller's (one new room, the
    agent dispatched with a ticket for the avatar, the same rate limit and ``issue_token`` audit entry), with
    the caller identity ``console-test-…`` (reserved: only this route issues it), which the call's session
    records as its caller. Audited as ``test_call``. An avatar that is not ready answers 409."""
    avatar = crud.get_owned(db, Avatar, body.avatar_id, principal.tenant_id, what="avatar")
    if avatar.status != JobStatus.ready:
        raise HTTPException(409, f"Avatar '{avatar.name}' is not ready yet ({avatar.status}): "
                                 "a test call starts once its portrait is prepared.")
    # letters only: the redactor every stored identity goes through never reads it as a number
    identity = tokens.TEST_CALL_PREFIX + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))
    out = tokens.mint(CallTokenRequest(avatar_id=avatar.id, name="Console test call"), request, db, principal,
                      identity=identity)
    audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="test_call", resource="avatar",
                 resource_id=avatar.id, changes={"session_id": out.session_id, "room": out.room, "identity": identity})
    db.commit()
    return out


@router.post("/console/logout", status_code=204)
def console_logout(request: Request, db: SessionDep, principal: Readers) -> Response:
    """Sign out: the session token is revoked and both cookies cleared (CSRF-checked like every write)."""
    response = Response(status_code=204)
    if browser_session.end(request, response, db):
        audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="logout",
                     resource="user", resource_id=principal.id)
    db.commit()
    return response


# --- try a question --------------------------------------------------------------------------
class SearchIn(In):
    """A question to try against a knowledge base."""

    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(default=3, ge=1, le=10)


class SearchHit(BaseModel):
    """One passage retrieval returned."""

    text: str
    title: str = ""
    source: str = ""
    score: float
    relevant: bool


class SearchOut(BaseModel):
    """What retrieval returns for the question, as the agent would see it."""

    method: str  # "hybrid" (the agent's index: embeddings + BM25) or "keywords" (stored chunks only)
    hits: list[SearchHit]


_index_cache: dict[str, tuple[float, Any]] = {}
_index_lock = threading.Lock()


def _load_index(folder: str) -> Any:
    from dialogue.knowledge import KnowledgeIndex

    mtime = (Path(folder) / "chunks.jsonl").stat().st_mtime
    with _index_lock:
        cached = _index_cache.get(folder)
        if cached and cached[0] == mtime:
            return cached[1]
        index = KnowledgeIndex.load(folder)
        _index_cache[folder] = (mtime, index)
        return index


def _terms(text: str) -> set[str]:
    try:
        from dialogue.knowledge import keywords

        return set(keywords(text))
    except ImportError:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


@router.post("/knowledge-bases/{kb_id}/search", response_model=SearchOut)
def search_kb(kb_id: str, body: SearchIn, db: SessionDep, principal: KbReaders) -> SearchOut:
    """The passages retrieval finds for a question: the knowledge base's index when it has one
    (what the agent loads), else a keyword match over the stored chunks."""
    kb = crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    if kb.index_dir and (Path(kb.index_dir) / "chunks.jsonl").is_file():
        try:
            index = _load_index(kb.index_dir)
        except ImportError:
            index = None
        if index is not None:
            hits = index.search(body.query, k=body.k)
            return SearchOut(method="hybrid", hits=[
                SearchHit(text=h.chunk.text, title=h.chunk.title, source=h.chunk.source, score=round(h.score, 4),
                          relevant=h.relevant) for h in hits])
    q = _terms(body.query)
    rows = db.execute(
        select(DocumentChunk.text, DocumentChunk.meta, Document.filename)
        .join(Document, Document.id == DocumentChunk.document_id)
        .where(Document.knowledge_base_id == kb.id, Document.status == JobStatus.ready.value)
        .limit(20_000)
    ).all()
    scored = []
    for text, meta, filename in rows:
        cover = len(q & _terms(text)) / len(q) if q else 0.0
        if cover > 0:
            scored.append((cover, text, (meta or {}).get("title", ""), filename))
    scored.sort(key=lambda s: -s[0])
    return SearchOut(method="keywords", hits=[
        SearchHit(text=t, title=title or "", source=src, score=round(c, 4), relevant=c >= 0.5)
        for c, t, title, src in scored[: body.k]])


# --- what the agent would answer ---------------------------------------------------------------
class AnswerIn(In):
    """A question to put to the agent, as a caller's first words in a call."""

    question: str = Field(min_length=1, max_length=1000)
    # the persona that speaks (one of this organisation's); none: the deployment's default persona,
    # what a call of an avatar without a persona gets
    persona_id: str | None = Field(default=None, max_length=36)


class AnswerCitation(BaseModel):
    """A passage the answer rests on, as the call's turn record keeps it, with its text."""

    chunk_id: str
    source: str = ""
    title: str = ""
    score: float | None = None
    text: str = ""


class AnswerToolCall(BaseModel):
    """A tool the agent would call (not run here): e.g. transfer_to_human, create_ticket."""

    name: str
    arguments: dict[str, Any] = {}


class AnswerPersona(BaseModel):
    id: str | None  # None: the deployment's default persona
    name: str


class AnswerOut(BaseModel):
    """What the agent would say to the question: the call's own policy on this knowledge base."""

    answer: str
    citations: list[AnswerCitation]
    decision: str  # dialogue.types.TurnRecord.decision: answer, no_answer, escalate, refuse_scope, ...
    language: str
    policy: str  # grounded-offline (retrieval and templates) or grounded-llm
    model: str
    tool_calls: list[AnswerToolCall]
    persona: AnswerPersona
    passages: int  # in the index the call would load (0: no document ingested, no approved answers)
    note: str | None = None  # what went wrong on the way, e.g. an LLM sentence dropped as unsupported
    seconds: float


def _call_index(kb: KnowledgeBase, embedding_model: str | None) -> Any:
    """The knowledge base's index as the agent loads it for a call (agent.call_config: the shared embedder,
    the version tag the meaning layer caches by, the same cache of loaded indexes); an empty index without
    documents."""
    from admin.call_config import index_revision
    from agent import call_config

    revision = index_revision(kb)
    if revision is None:  # the call answers that it has no approved information
        return call_config.empty_index()
    key = (kb.id, revision)
    if (index := call_config.loaded_index(key)) is not None:
        return index
    return call_config.keep_index(key, call_config.load_index(kb.index_dir, f"{kb.id}:{revision}", embedding_model))


def agent_answer(settings: Any, question: str, persona: Any, index: Any) -> tuple[Any, float]:
    """The first turn of a call with this persona and index: ``dialogue.load_policy`` with the
    deployment's dialogue settings (``DIALOGUE_*``: an LLM when ``DIALOGUE_LLM_BASE_URL`` is set, else
    retrieval and templates), as ``agent.tools.prepare_call`` builds it. Tools are not run. Blocking:
    call it in a worker thread."""
    import asyncio
    import time

    from dialogue import CORE_TOOLS, Message, load_policy

    started = time.perf_counter()
    policy = load_policy(settings, persona=persona, index=index)

    async def turn() -> None:
        try:
            async for _ in policy.respond([Message("user", question)], [*CORE_TOOLS, *policy.registry.specs()]):
                pass
        finally:
            await policy.aclose()

    asyncio.run(turn())
    return policy, time.perf_counter() - started


@router.post("/knowledge-bases/{kb_id}/answer", response_model=AnswerOut)
def answer_kb(kb_id: str, body: AnswerIn, db: SessionDep, principal: Readers) -> AnswerOut:
    """What the agent would answer to the question with this knowledge base (and ``persona_id``, else the
    deployment's default persona), with the passages it cites: the call's own policy. A plain ``def``
    route: FastAPI runs it in a worker thread, so the embeddings (and an LLM's answer) never hold up the
    event loop. Tools it would call are listed, not run; nothing is recorded."""
    from admin.call_config import dialogue_persona
    from dialogue import DialogueSettings, load_persona

    kb = crud.get_owned(db, KnowledgeBase, kb_id, principal.tenant_id, what="knowledge base")
    settings = DialogueSettings()
    if body.persona_id:
        row = crud.get_owned(db, Persona, body.persona_id, principal.tenant_id, what="persona")
        try:
            persona = load_persona(dialogue_persona(row, db.get(Tenant, principal.tenant_id)))
        except ValueError as e:  # a stored persona the dialogue cannot read (the call falls back to the default)
            raise HTTPException(422, f"persona_id: the persona is not valid for a call ({str(e)[:200]})") from None
        who = AnswerPersona(id=row.id, name=row.name)
    else:
        persona = load_persona(settings.persona_file)
        who = AnswerPersona(id=None, name=persona.name)
    index = _call_index(kb, settings.embedding_model)
    db.close()  # the answer may take seconds (an LLM): no connection held meanwhile
    policy, seconds = agent_answer(settings, body.question, persona, index)
    rec = policy.turns[-1]
    note = rec.error
    if policy.index is not index:
        # dialogue.load_policy takes an empty index for none and loads the deployment's default knowledge
        # (DIALOGUE_KNOWLEDGE_*, the default persona's sources): what a call with this knowledge base does too
        note = "; ".join(filter(None, [note, "this knowledge base has no index, so the call's policy answers from the "
                                             "deployment's default knowledge instead"]))
    texts = {c.id: c.text for c in policy.index.chunks}
    return AnswerOut(
        answer=rec.reply.strip(), decision=rec.decision, language=rec.language, policy=policy.name, model=policy.model,
        citations=[AnswerCitation(chunk_id=str(c.get("chunk_id", "")), source=c.get("source") or "",
                                  title=c.get("title") or "", score=c.get("score"), text=texts.get(c.get("chunk_id"), ""))
                   for c in rec.citations],
        tool_calls=[AnswerToolCall(name=t["name"], arguments=t.get("arguments") or {}) for t in rec.tool_calls],
        persona=who, passages=len(index.chunks), note=note, seconds=round(seconds, 3),
    )


# --- insights ----------------------------------------------------------------------------------
def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p * (len(values) - 1))))]


OUTCOMES = ("completed", "abandoned", "escalated", "escalated_handled", "escalated_unanswered", "failed")
IN_PROGRESS = "open"  # a session without an outcome (the call is still going, or never reported its end)
NO_ANSWER_KEYS = ("no_answer", "still_no_answer")  # what the agent says when it has no approved answer
TOP_UNANSWERED = 20
_APOSTROPHES = re.compile(r"['\u2019\u02bc]")
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f{]")


def question_key(text: str) -> str:
    """A question's text for grouping: lower-case, without punctuation, single spaces."""
    return " ".join(re.findall(r"[^\W_]+", _APOSTROPHES.sub("", text.casefold())))


def _squeezed(text: str) -> str:
    return re.sub(r"[\W_]+", "", _APOSTROPHES.sub("", text.casefold()))


def no_answer_prefixes(overrides: list[dict[str, Any]] | None = None) -> tuple[str, ...]:
    """How an answer without approved information starts: the first sentence of the ``no_answer`` and
    ``still_no_answer`` phrases (dialogue.templates, every language, and any persona's own wording),
    squeezed (lower-case, no punctuation or spaces)."""
    texts = [t for k in NO_ANSWER_KEYS for t in PHRASES[k].values()]
    for phrases in overrides or []:
        for k in NO_ANSWER_KEYS:
            table = phrases.get(k) if isinstance(phrases, dict) else None
            if isinstance(table, dict):
                texts += [t for t in table.values() if isinstance(t, str)]
    out = {_squeezed(_SENTENCE_END.split(t, maxsplit=1)[0]) for t in texts}
    return tuple(sorted(p for p in out if len(p) >= 4))


def is_no_answer(text: str | None, citations: Any, prefixes: tuple[str, ...]) -> bool:
    """An assistant turn that cited nothing and starts like one of the no-answer phrases."""
    return not citations and bool(text) and _squeezed(text).startswith(prefixes)


def _unanswered(db: Session, tenant_id: str, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], int]:
    """The caller's questions the agent had no approved answer for (a user turn whose next turn in the
    call is a no-answer assistant turn), grouped by :func:`question_key`, most frequent first."""
    personas = db.scalars(select(Persona.settings).where(Persona.tenant_id == tenant_id)).all()
    prefixes = no_answer_prefixes([(s or {}).get("phrases") for s in personas if isinstance(s, dict)])

    def following(col: Any) -> Any:  # the same column of the call's next turn
        return func.lead(col).over(partition_by=Turn.session_id, order_by=(Turn.seq, Turn.created_at, Turn.id))

    pairs = (
        select(Turn.speaker, Turn.text, Turn.started_at, Turn.created_at, CallSession.started_at.label("call_at"),
               following(Turn.speaker).label("next_speaker"), following(Turn.text).label("next_text"),
               type_coerce(following(Turn.citations), Turn.citations.type).label("next_citations"))
        .join(CallSession, CallSession.id == Turn.session_id)
        .where(Turn.tenant_id == tenant_id, CallSession.tenant_id == tenant_id, CallSession.started_at >= start,
               CallSession.started_at <= end)
        .subquery()
    )
    rows = db.execute(
        select(pairs).where(pairs.c.speaker == "user", pairs.c.next_speaker == "assistant").limit(200_000)
    ).all()
    groups: dict[str, dict[str, Any]] = {}
    total = 0
    for r in rows:
        if not is_no_answer(r.next_text, r.next_citations, prefixes):
            continue
        key = question_key(r.text or "")
        if not key:
            continue
        total += 1
        at = r.started_at or r.call_at
        when = (at, r.created_at)
        g = groups.setdefault(key, {"key": key, "count": 0, "text": r.text, "last_at": at, "_when": when})
        g["count"] += 1
        if when >= g["_when"]:
            g.update(text=r.text, last_at=at, _when=when)
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], -g["_when"][0].timestamp(), g["key"]))
    return [{k: v for k, v in g.items() if k != "_when"} for g in ranked[:TOP_UNANSWERED]], total


@router.get("/console/insights")
def insights(
    db: SessionDep, principal: Readers,
    days: Annotated[int, Query(ge=1, le=366)] = 14,
    until: Annotated[UtcDatetime | None, Query(description="end of the window (default now)")] = None,
) -> dict[str, Any]:
    """Per day (UTC) over the window: calls, escalated calls, calls per outcome (``open``: no outcome
    yet), the escalation rate, and p50/p95 of each latency stage (seconds); and over the whole window
    the caller's questions the agent had no approved answer for, most frequent first (top 20:
    normalised text, count, the latest wording and when it was asked)."""
    end = (until or utcnow()).astimezone(UTC)
    try:
        first_day = (end - timedelta(days=days - 1)).date()
    except OverflowError:  # a window reaching before year 1: the request's fault, not a 500
        raise HTTPException(422, "The window starts before year 1; choose a later 'until' or fewer days.") from None
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    labels = [(first_day + timedelta(days=i)).isoformat() for i in range(days)]
    sessions = db.execute(
        select(CallSession.id, CallSession.started_at, CallSession.escalated, CallSession.outcome)
        .where(CallSession.tenant_id == principal.tenant_id, CallSession.started_at >= start,
               CallSession.started_at <= end)
    ).all()
    calls = dict.fromkeys(labels, 0)
    escalated = dict.fromkeys(labels, 0)
    outcomes: dict[str, dict[str, int]] = {o: dict.fromkeys(labels, 0) for o in (*OUTCOMES, IN_PROGRESS)}
    day_of: dict[str, str] = {}
    for s in sessions:
        day = s.started_at.astimezone(UTC).date().isoformat()
        if day in calls:
            calls[day] += 1
            outcome = s.outcome or IN_PROGRESS
            escalated[day] += int(bool(s.escalated) or outcome.startswith("escalated"))
            outcomes.setdefault(outcome, dict.fromkeys(labels, 0))[day] += 1
            day_of[s.id] = day
    per_stage: dict[str, dict[str, list[float]]] = {}
    unanswered: list[dict[str, Any]] = []
    unanswered_total = 0
    if day_of:
        rows = db.execute(
            select(Turn.session_id, Turn.latency)
            .join(CallSession, CallSession.id == Turn.session_id)
            .where(Turn.tenant_id == principal.tenant_id, CallSession.started_at >= start,
                   CallSession.started_at <= end)
            .limit(100_000)
        ).all()
        for sid, lat in rows:
            day = day_of.get(sid)
            for stage, v in (lat or {}).items():
                if day and isinstance(v, (int, float)):
                    per_stage.setdefault(stage, {}).setdefault(day, []).append(float(v))
        unanswered, unanswered_total = _unanswered(db, principal.tenant_id, start, end)
    latency = {
        stage: {"p50": [_pct(by_day.get(d, []), 0.5) for d in labels],
                "p95": [_pct(by_day.get(d, []), 0.95) for d in labels]}
        for stage, by_day in sorted(per_stage.items())
    }
    return {"days": labels, "calls": [calls[d] for d in labels], "escalated": [escalated[d] for d in labels],
            "outcomes": {o: [by_day[d] for d in labels] for o, by_day in outcomes.items()},
            "escalation_rate": [round(escalated[d] / calls[d], 4) if calls[d] else None for d in labels],
            "latency": latency, "unanswered": unanswered, "unanswered_total": unanswered_total}
