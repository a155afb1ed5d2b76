"""Durable session recorder: the agent's log of calls and turns, delivered to the admin API.

Every event (session start, turn, session end) gets a client-generated UUID and
is first appended to a local SQLite spool (WAL, ``synchronous=FULL``, so it is on
disk before it is sent). One background thread moves events from memory to the
spool and from the spool to ``POST {base_url}/api/v1/agent/events`` in order,
retrying with exponential backoff while the backend or its database is down.
The API remembers every event id, so a batch delivered twice (response lost,
process restarted before the spool was trimmed) is applied exactly once. When the spool
cannot take events (its disk full, an I/O error) they are kept in memory, in order (up to
``MAX_HELD``), delivered from there, and spooled again once it can; the call notices nothing.

Public methods never do I/O on the caller's thread: they hand the event to the
recorder thread and return at once, so they are safe to call from the event
loop and from synchronous LiveKit callbacks. Events still in the spool when the
process exits are sent by the next recorder opened on the same ``spool_dir``.

    rec = SessionRecorder("http://127.0.0.1:8000", api_key, "~/.cache/dh-agent/spool")
    sid = rec.start_session(session_id=meta["session_id"], avatar_id=..., room=ctx.room.name)
    rec.add_turn(sid, "user", "What are your opening hours?", language="en",
                 latency={"transcription_delay": 0.21, "end_of_turn_delay": 0.4})
    rec.end_session(sid, outcome="completed")
    await rec.aclose(timeout=10)

Where events go, and with which key, comes only from the agent's own settings (``DH_ADMIN_URL``,
``DH_ADMIN_API_KEY``), never from the dispatch metadata a caller's token carries. Each call's
events carry that call's ``session_grant`` (from the admin, for the call's ticket:
:mod:`agent.call_config`), so the admin records them in the call's own organisation and session
only: :func:`recorder_for_call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger("agent.recorder")

_STOP = object()
MAX_HELD = 50_000  # events kept in memory while the spool cannot take them (a full disk): ~1 kB each
# 4xx answers that may change without the events changing (a key being fixed, a rate limit, a
# concurrent write): retried with back-off like 5xx and network errors. Every other 4xx is
# permanent: a single event so refused is dropped (kept in the dead-letter table, with a log line).
_RETRY_4XX = {401, 403, 408, 409, 425, 429}
# 5xx answers that mean "not now" (proxy, overload, database down) rather than "this batch breaks me".
_UNAVAILABLE = {502, 503, 504}


def _permanent(status: int) -> bool:
    return 400 <= status < 500 and status not in _RETRY_4XX


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(ts: datetime | float | str | None) -> str | None:
    if ts is None or isinstance(ts, str):
        return ts
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, UTC).isoformat()
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


class SessionRecorder:
    """Records sessions and turns locally and delivers them to the admin API exactly once."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        spool_dir: str | Path,
        *,
        api_prefix: str = "/api/v1",
        batch_size: int = 100,
        request_timeout: float = 5.0,
        max_backoff: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + api_prefix + "/agent/events"
        self._api_key = api_key
        self._spool = Path(spool_dir).expanduser() / "recorder.sqlite3"
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._timeout = request_timeout
        self._max_backoff = max_backoff
        self._transport = transport
        self._q: queue.Queue[Any] = queue.Queue()
        self._seq: dict[str, int] = {}
        self._grants: dict[str, str] = {}  # session id -> its session grant
        self._seq_lock = threading.Lock()
        self._unsent = 0  # rows in the spool, maintained by the thread
        # events handed over and not yet in the spool (counted until committed there, so that
        # `pending` never reads 0 while the thread holds events between the queue and the spool)
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._delivered = 0
        self._deadline: float | None = None
        self._isolate_through: int | None = None  # spool seq up to which events are sent one by one
        self._acked_through = 0  # spool seq up to which the API has the events (deleted, or to delete)
        self._held: list[tuple[str, str]] = []  # (id, JSON) of events the spool could not take (disk full), in order
        self._held_isolating = False
        self._untrimmed = False  # acknowledged events still in the spool (a delete failed: disk full)
        self._respool_at = 0.0
        self._dropped = 0
        self._closed = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-recorder", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # --- recording (non-blocking) ---------------------------------------------------------
    def start_session(
        self,
        *,
        session_id: str | None = None,
        avatar_id: str | None = None,
        persona_id: str | None = None,
        room: str | None = None,
        caller_identity: str | None = None,
        started_at: datetime | float | None = None,
        meta: dict[str, Any] | None = None,
        grant: str | None = None,
    ) -> str:
        """Record the start of a call; returns its session id (``session_id`` from the dispatch metadata, or new).

        ``grant`` is the call's ``session_grant`` from the dispatch metadata (or given before with
        :meth:`grant_session`); every event of the session carries it."""
        sid = session_id or str(uuid.uuid4())
        if grant:
            self.grant_session(sid, grant)
        self._put("session_start", {
            "session_id": sid, "avatar_id": avatar_id, "persona_id": persona_id, "room": room,
            "caller_identity": caller_identity, "started_at": _iso(started_at) or _now(), "meta": meta or {},
        })
        return sid

    def add_turn(
        self,
        session_id: str,
        speaker: str,
        text: str,
        *,
        language: str | None = None,
        citations: list[Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        latency: dict[str, float | None] | None = None,
        interrupted: bool = False,
        started_at: datetime | float | None = None,
        ended_at: datetime | float | None = None,
        turn_id: str | None = None,
    ) -> str:
        """Record one utterance (``speaker``: user, assistant, system, human_agent); returns the turn id.

        ``tool_calls`` are the tools the policy called about a caller's turn (``name``, ``arguments``).
        ``latency`` holds per-stage seconds, e.g. transcription_delay, end_of_turn_delay,
        llm_node_ttft, tts_node_ttfb, e2e_latency, avatar_first_frame. The API redacts PII.
        """
        tid = turn_id or str(uuid.uuid4())
        with self._seq_lock:
            seq = self._seq.get(session_id, 0)
            self._seq[session_id] = seq + 1
        self._put("turn", {
            "session_id": session_id, "turn_id": tid, "seq": seq, "speaker": speaker, "text": text,
            "language": language, "citations": list(citations or []),
            "tool_calls": [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in tool_calls or []],
            "latency": dict(latency or {}),
            "interrupted": interrupted, "started_at": _iso(started_at), "ended_at": _iso(ended_at) or _now(),
        }, event_id=tid)
        return tid

    def end_session(
        self,
        session_id: str,
        *,
        outcome: str | None = "completed",
        escalated: bool = False,
        escalation_reason: str | None = None,
        ended_at: datetime | float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Record the end of a call (outcome: completed, abandoned, escalated, failed); returns the event id."""
        return self._put("session_end", {
            "session_id": session_id, "outcome": outcome, "escalated": escalated,
            "escalation_reason": escalation_reason, "ended_at": _iso(ended_at) or _now(), "meta": meta or {},
        })

    def handoff(self, session_id: str, state: str, *, room: str | None = None, reason: str | None = None,
                summary: str | None = None, at: datetime | float | None = None) -> str:
        """Record a handoff change (``state``: waiting, accepted, returned, unanswered): the admin's live
        queue shows it within the recorder's next send (it sends as soon as an event arrives)."""
        payload: dict[str, Any] = {"session_id": session_id, "state": state, "at": _iso(at) or _now()}
        payload.update({k: v for k, v in (("room", room), ("reason", reason), ("summary", summary)) if v})
        return self._put("handoff", payload)

    def continue_session(self, session_id: str, grant: str | None, *, first_seq: int) -> str:
        """Go on recording a session another process started (a call resumed after its agent worker
        died): no new session, turns numbered from ``first_seq`` (after all of the old worker's)."""
        if grant:
            self.grant_session(session_id, grant)
        with self._seq_lock:
            self._seq[session_id] = max(first_seq, self._seq.get(session_id, 0))
        return session_id

    def grant_session(self, session_id: str, grant: str) -> None:
        """Attach the call's session grant to every event of ``session_id`` recorded from now on."""
        with self._seq_lock:
            self._grants[session_id] = grant

    def _put(self, kind: str, payload: dict[str, Any], event_id: str | None = None) -> str:
        if self._closed:
            raise RuntimeError("SessionRecorder is closed")
        eid = event_id or str(uuid.uuid4())
        event = {"event_id": eid, "type": kind, "payload": payload}
        grant = self._grants.get(payload["session_id"])
        if grant:
            event["grant"] = grant
        with self._count_lock:
            self._in_flight += 1
        self._q.put(event)
        return eid

    # --- state and shutdown ---------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events recorded but not yet acknowledged by the API."""
        return self._in_flight + self._unsent

    @property
    def delivered(self) -> int:
        """Events acknowledged by the API since this recorder started."""
        return self._delivered

    @property
    def dropped(self) -> int:
        """Events the API refused for good since this recorder started (kept in the dead-letter table)."""
        return self._dropped

    async def aflush(self, timeout: float = 10.0) -> bool:
        """Wait until every recorded event is acknowledged; False on timeout (they stay spooled)."""
        end = time.monotonic() + timeout
        while self.pending and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return self.pending == 0

    async def aclose(self, timeout: float = 10.0) -> bool:
        """Deliver what is pending for up to ``timeout`` seconds, then stop; True when nothing is left."""
        if not self._closed:
            self._closed = True
            self._deadline = time.monotonic() + timeout
            self._q.put(_STOP)
        await asyncio.to_thread(self._thread.join, timeout + 5)
        return self.pending == 0

    def close(self, timeout: float = 10.0) -> bool:
        """Blocking variant of :meth:`aclose` for synchronous code."""
        if not self._closed:
            self._closed = True
            self._deadline = time.monotonic() + timeout
            self._q.put(_STOP)
        self._thread.join(timeout + 5)
        return self.pending == 0

    # --- the recorder thread --------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            return self._schema(sqlite3.connect(self._spool, isolation_level=None), durable=True)
        except sqlite3.Error as exc:
            logger.error("the spool %s cannot be opened (%s): events are kept in memory only (lost if the agent "
                         "stops before the admin has them)", self._spool, exc)
            return self._schema(sqlite3.connect(":memory:", isolation_level=None), durable=False)

    @staticmethod
    def _schema(db: sqlite3.Connection, *, durable: bool) -> sqlite3.Connection:
        if durable:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # fsync on every commit: a spooled event survives a crash
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "event_id TEXT UNIQUE NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS dead_letter (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
            "status INTEGER, reason TEXT, created_at REAL NOT NULL)"
        )
        return db

    def _run(self) -> None:
        db = self._open()
        self._count_unsent(db)
        self._ready.set()
        client = httpx.Client(timeout=self._timeout, transport=self._transport,
                              headers={"X-API-Key": self._api_key})
        backoff, next_try, stopping = 0.0, 0.0, False
        try:
            while True:
                idle = self._unsent == 0 and not self._held
                wait = 0.5 if idle else max(0.0, next_try - time.monotonic())
                items = self._drain(0 if stopping else min(wait, 0.5))
                if any(i is _STOP for i in items):
                    stopping = True
                events = [i for i in items if i is not _STOP]
                if events or (self._held and time.monotonic() >= self._respool_at):
                    self._spool_events(db, events)
                idle = self._unsent == 0 and not self._held
                if stopping and (idle or time.monotonic() >= (self._deadline or 0)):
                    break
                if idle or time.monotonic() < next_try:
                    if stopping:
                        time.sleep(min(0.05, max(0.0, next_try - time.monotonic())))
                    continue
                # the spool's events first; events it could not take only once it holds nothing older
                if self._send_batch(db, client) if self._unsent else self._send_held(client):
                    backoff = 0.0
                    next_try = 0.0
                else:
                    backoff = min(self._max_backoff, backoff * 2 if backoff else 0.2)
                    next_try = time.monotonic() + backoff
        except Exception:
            logger.exception("session recorder thread failed; unsent events stay in %s", self._spool)
        finally:
            # Anything still in memory goes to disk for the next recorder.
            leftover = [i for i in self._drain(0) if i is not _STOP]
            if leftover or self._held:
                self._spool_events(db, leftover)
            if self._untrimmed:
                self._trim(db)
            if self._held:
                logger.error("%d session events could not be spooled or delivered before the recorder stopped: lost",
                             len(self._held))
            client.close()
            db.close()

    def _drain(self, wait: float) -> list[Any]:
        items: list[Any] = []
        try:
            items.append(self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait())
            while len(items) < 1000:
                items.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return items

    def _count_unsent(self, db: sqlite3.Connection) -> None:
        self._unsent = db.execute("SELECT count(*) FROM outbox WHERE seq > ?", (self._acked_through,)).fetchone()[0]

    def _spool_events(self, db: sqlite3.Connection, events: list[dict[str, Any]]) -> None:
        """Commit ``events`` (after any held in memory) to the spool; when the spool cannot take them
        (disk full, I/O error), keep them in memory, in order, and try again a second later."""
        batch = self._held + [(e["event_id"], json.dumps(e, ensure_ascii=False, default=str)) for e in events]
        now = time.time()
        try:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO outbox (event_id, body, created_at) VALUES (?, ?, ?)",
                           [(eid, body, now) for eid, body in batch])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if not self._held:
                logger.error("the spool %s cannot take events (%s): they are kept in memory and sent from there "
                             "until it can", self._spool, exc)
            if len(batch) > MAX_HELD:
                logger.error("%d session events over the %d kept in memory while the spool is full: the oldest are lost",
                             len(batch) - MAX_HELD, MAX_HELD)
                with self._count_lock:
                    self._in_flight -= len(batch) - MAX_HELD
                batch = batch[-MAX_HELD:]
            self._held = batch
            self._respool_at = time.monotonic() + 1.0
            return
        if self._held:
            logger.info("the spool takes events again (%d were kept in memory)", len(self._held))
        self._held = []
        if self._untrimmed:
            self._trim(db)
        self._count_unsent(db)
        with self._count_lock:
            self._in_flight -= len(batch)

    def _deliver(self, client: httpx.Client, events: list[tuple[str, str]], where: str,
                 refused: str) -> tuple[str, httpx.Response | None]:
        """POST ``events`` ((event id, JSON body) in order) and judge the answer: ``retry`` (network, "not
        now"), ``split`` (send them one by one: one bad event, or a batch too large, must not sink the
        others), ``refused`` (this single event, for good: counted as dropped) or ``delivered``."""
        try:
            resp = client.post(self._url, content='{"events":[' + ",".join(b for _eid, b in events) + "]}",
                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            logger.info("admin API unreachable (%s); %d events wait (these %d %s)", exc.__class__.__name__,
                        self.pending, len(events), where)
            return "retry", None
        status = resp.status_code
        if len(events) > 1 and (_permanent(status) or (status >= 500 and status not in _UNAVAILABLE)):
            logger.warning("admin API answered %d to a batch of %d events; sending them one by one", status, len(events))
            return "split", resp
        if _permanent(status):
            logger.error("admin API refused event %s for good (%d): %s; dropped (%s)", events[0][0], status,
                         resp.text[:300], refused)
            self._dropped += len(events)
            return "refused", resp
        if resp.is_success:
            self._delivered += len(events)
            return "delivered", resp
        logger.info("admin API answered %d; retrying %d events later", status, len(events))
        return "retry", resp

    def _send_batch(self, db: sqlite3.Connection, client: httpx.Client) -> bool:
        first = db.execute("SELECT min(seq) FROM outbox WHERE seq > ?", (self._acked_through,)).fetchone()[0]
        if first is None:
            return True
        isolating = self._isolate_through is not None and first <= self._isolate_through
        if self._isolate_through is not None and not isolating:
            self._isolate_through = None
        limit = 1 if isolating else self._batch_size
        rows = db.execute("SELECT seq, event_id, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                          (self._acked_through, limit)).fetchall()
        outcome, resp = self._deliver(client, [(eid, body) for _seq, eid, body in rows], "in the spool",
                                      "kept in dead_letter")
        last = rows[-1][0]
        if outcome == "retry":
            return False
        if outcome == "split":
            self._isolate_through = last
            return True
        if outcome == "refused":
            with contextlib.suppress(sqlite3.Error):  # a full disk loses the dead-letter copy, not the loop
                db.executemany(
                    "INSERT OR REPLACE INTO dead_letter (event_id, body, status, reason, created_at) VALUES (?,?,?,?,?)",
                    [(eid, body, resp.status_code, resp.text[:1000], time.time()) for _seq, eid, body in rows],
                )
        # acknowledged: never sent again by this recorder, even while the disk is too full to delete them
        self._acked_through = last
        self._trim(db)
        self._count_unsent(db)
        return True

    def _trim(self, db: sqlite3.Connection) -> None:
        """Delete the acknowledged events from the spool (retried later when the disk is too full to)."""
        try:
            db.execute("DELETE FROM outbox WHERE seq <= ?", (self._acked_through,))
            self._untrimmed = False
        except sqlite3.Error:
            self._untrimmed = True

    def _send_held(self, client: httpx.Client) -> bool:
        """Deliver events the spool could not take, straight from memory."""
        batch = self._held[: 1 if self._held_isolating else self._batch_size]
        outcome, _resp = self._deliver(client, batch, "in memory", "the spool was full: no dead letter")
        if outcome == "retry":
            return False
        if outcome == "split":
            self._held_isolating = True
            return True
        del self._held[: len(batch)]
        self._held_isolating = self._held_isolating and bool(self._held)
        with self._count_lock:
            self._in_flight -= len(batch)
        return True


# --- one recorder per process, configured by the agent only -------------------------------------
_process_recorder: SessionRecorder | None = None
_process_lock = threading.Lock()


def recorder_for_call(settings: Any, meta: dict[str, Any]) -> SessionRecorder | None:
    """The process's recorder, set up for one call; None when no admin backend is configured.

    ``settings`` is the agent's (``admin_url`` = ``DH_ADMIN_URL``, ``admin_api_key`` =
    ``DH_ADMIN_API_KEY``, ``spool_dir``). The dispatch metadata ``meta`` comes from the caller's
    token: only its ``session_id`` and ``session_grant`` are used (the grant goes with every event of
    that session); any URL in it is ignored, so no caller can send the key or the transcript elsewhere.
    """
    global _process_recorder
    url, key = (settings.admin_url or "").strip(), (settings.admin_api_key or "").strip()
    if not (url and key):
        if meta.get("admin_url"):
            logger.warning("ignoring admin_url from the dispatch metadata; set DH_ADMIN_URL to record calls")
        return None
    with _process_lock:
        if _process_recorder is None or _process_recorder._closed:
            _process_recorder = SessionRecorder(url, key, settings.spool_dir)
        rec = _process_recorder
    sid, grant = meta.get("session_id"), meta.get("session_grant")
    if isinstance(sid, str) and isinstance(grant, str) and sid and grant:
        rec.grant_session(sid, grant)
    else:
        logger.warning("the dispatch metadata has no session grant: the admin will refuse this call's events")
    return rec
