"""A person takes the call over: the handoff queue, the colleague in the room, handing back.

When the policy hands over (``transfer_to_human``: it has already told the caller "I'm connecting
you to a colleague"), the call goes into its organisation's live queue in the admin
(:mod:`admin.api.routes.handoffs`) with the reason and the redacted summary. An operator who
accepts joins the room as ``operator-…``; from that moment the agent does not answer the caller
(:meth:`HandoffDesk.gate` stops each reply), the avatar shows its listening face, and both the
caller and the colleague are transcribed into the session record (the colleague's turns as
``human_agent``). When the colleague leaves, the agent says it is back and goes on with the
conversation. If nobody joins within ``AGENT_HANDOFF_TIMEOUT`` seconds, the agent says so,
creates a call-back ticket and goes on helping.

Every state change is one recorder event (``handoff``), delivered as soon as it is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents import stt as lk_stt

from dialogue.guardrails import redact

from .metrics import HANDOFF_WAITING

logger = logging.getLogger("agent.handoff")

OPERATOR_PREFIX = "operator-"  # admin.api.routes.handoffs.OPERATOR_PREFIX: identities of people taking calls


class HandoffDesk:
    """One call's way to a person (see the module docstring)."""

    def __init__(self, *, room: rtc.Room, session: Any, state: Any, persona: Any, language: Callable[[], str],
                 recorder: Any = None, session_id: str | None = None,
                 listener: Callable[[], tuple[Any, Any]] | None = None, timeout: float = 60.0) -> None:
        self._room, self._session, self._state, self._persona = room, session, state, persona
        self._language, self._recorder, self._session_id = language, recorder, session_id
        self._listener, self.timeout = listener, timeout
        self.operator: str | None = None  # identity of the colleague in the room now
        self.requested_at: float | None = None
        self.joined_at: float | None = None
        self.handled = False  # a colleague took the call at least once
        self.unanswered = False  # nobody came in time
        self._timer: asyncio.Task | None = None
        self._listening: dict[str, asyncio.Task] = {}
        self._waiting = False  # counted in dh_handoff_waiting
        room.on("participant_connected", self._on_join)
        room.on("participant_disconnected", self._on_leave)
        room.on("track_subscribed", self._on_track)
        for p in room.remote_participants.values():  # a colleague already in the room (a restarted agent)
            self._on_join(p)

    # -------------------------------------------------------------- state
    @property
    def person_present(self) -> bool:
        return self.operator is not None

    @property
    def outcome(self) -> str | None:
        """The session outcome this handoff gives (None when there was none)."""
        if self.handled:
            return "escalated_handled"
        if self.unanswered:
            return "escalated_unanswered"
        return None

    def _record(self, state: str, **kw: Any) -> None:
        if self._recorder is not None and self._session_id:
            self._recorder.handoff(self._session_id, state, **kw)

    def _turn(self, speaker: str, text: str) -> None:
        if self._recorder is not None and self._session_id and text.strip():
            self._recorder.add_turn(self._session_id, speaker, redact(text.strip()), language=self._language())

    # -------------------------------------------------------------- the agent asks
    async def request(self, state: Any) -> None:
        """The policy handed over (``CallState.on_escalate``): into the queue, and wait for a person."""
        if self.person_present or (self._timer is not None and not self._timer.done()):
            return
        self.requested_at = time.time()
        self._set_waiting(True)
        self._record("waiting", room=self._room.name, reason=state.escalation_reason or None,
                     summary=state.escalation_summary or None)
        logger.info("call waits for a colleague (%s); %.0f s before a call-back ticket", state.escalation_reason,
                    self.timeout, extra={"room": self._room.name, "session_id": self._session_id})
        self._timer = asyncio.create_task(self._wait(), name="handoff-wait")

    def _set_waiting(self, waiting: bool) -> None:
        if waiting == self._waiting:
            return
        self._waiting = waiting
        if waiting:
            HANDOFF_WAITING.inc()
        else:
            HANDOFF_WAITING.dec()

    async def _wait(self) -> None:
        await asyncio.sleep(self.timeout)
        if self.person_present:
            return
        self._set_waiting(False)
        self.unanswered = True
        ticket_id = f"T-{uuid.uuid4().hex[:6].upper()}"
        reason = self._state.escalation_reason or "caller asked for a person"
        self._state.tickets.append({"ticket_id": ticket_id, "subject": redact(f"call back: {reason}"),
                                    "details": self._state.escalation_summary})
        self._record("unanswered")
        self._turn("system", f"no colleague accepted within {self.timeout:.0f} s; call-back ticket {ticket_id}")
        logger.warning("no colleague accepted within %.0f s: ticket %s", self.timeout, ticket_id,
                       extra={"room": self._room.name, "session_id": self._session_id})
        self._session.say(self._persona.phrase("handoff_unanswered", self._language(), ticket_id=ticket_id))

    # -------------------------------------------------------------- the colleague
    def _on_join(self, p: rtc.RemoteParticipant) -> None:
        if not p.identity.startswith(OPERATOR_PREFIX) or self.operator is not None:
            return
        self.operator, self.joined_at, self.handled = p.identity, time.time(), True
        self._set_waiting(False)
        if self._timer is not None:
            self._timer.cancel()
        self._session.interrupt()  # whatever the agent was saying, the colleague speaks now
        waited = self.joined_at - self.requested_at if self.requested_at else 0.0
        self._record("accepted")
        self._turn("system", f"a colleague ({p.name or p.identity}) took over after {waited:.1f} s")
        logger.info("a colleague took the call over after %.1f s", waited,
                    extra={"room": self._room.name, "operator": p.identity, "handoff_wait": round(waited, 2)})
        for pub in p.track_publications.values():
            if pub.track is not None and pub.kind == rtc.TrackKind.KIND_AUDIO:
                self._on_track(pub.track, pub, p)

    def _on_track(self, track: rtc.Track, _pub: Any, p: rtc.RemoteParticipant) -> None:
        if p.identity != self.operator or track.kind != rtc.TrackKind.KIND_AUDIO or self._listener is None:
            return
        if p.identity not in self._listening:
            self._listening[p.identity] = asyncio.create_task(self._transcribe(track), name="handoff-listen")

    async def _transcribe(self, track: rtc.Track) -> None:
        """The colleague's words, for the record (the shared Whisper; its VAD cuts the utterances)."""
        vad, stt = self._listener()
        audio = rtc.AudioStream(track, sample_rate=16000, num_channels=1)
        stream = lk_stt.StreamAdapter(stt=stt, vad=vad).stream()

        async def feed() -> None:
            async for ev in audio:
                stream.push_frame(ev.frame)
            stream.end_input()

        feeder = asyncio.create_task(feed())
        try:
            async for ev in stream:
                if ev.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives:
                    self._turn("human_agent", ev.alternatives[0].text)
        except asyncio.CancelledError:
            pass
        finally:
            feeder.cancel()
            await stream.aclose()
            await audio.aclose()

    def _on_leave(self, p: rtc.RemoteParticipant) -> None:
        if p.identity != self.operator:
            return
        self.operator = None
        task = self._listening.pop(p.identity, None)
        if task is not None:
            task.cancel()
        self._record("returned")
        self._turn("system", "the colleague handed the call back")
        logger.info("the colleague handed the call back after %.1f s", time.time() - (self.joined_at or time.time()),
                    extra={"room": self._room.name})
        self._session.say(self._persona.phrase("handoff_back", self._language()))

    # -------------------------------------------------------------- while a person is there
    def gate(self, text: str) -> bool:
        """Called with each finished caller turn: True when the agent must not answer it (a person
        is taking care of the caller); the turn is then recorded here."""
        if not self.person_present:
            return False
        self._turn("user", text)
        return True

    async def aclose(self) -> None:
        self._set_waiting(False)
        for t in [self._timer, *self._listening.values()]:
            if t is not None:
                t.cancel()
        self._listening.clear()
