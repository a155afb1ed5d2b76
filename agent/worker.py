"""The call agent: VAD + Whisper STT + dialogue policy + Piper TTS, speaking through the avatar.

Registered with an agent name, so it joins only rooms it is explicitly
dispatched to (a caller token with a room configuration, or the dispatch API).
Calls are threads of one process and share its models (`agent.models`); all model compute runs in
threads so the event loop only moves media.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AutoSubscribe,
    ChatContext,
    JobContext,
    JobExecutorType,
    JobProcess,
    ModelSettings,
    StopResponse,
    cli,
    room_io,
)

from dialogue import DialogueSettings, TurnRecord, load_knowledge
from dialogue.guardrails import install_log_redaction, redact

from . import metrics as call_metrics
from .avatar_link import AvatarLink
from .call_config import resolve_call
from .contract import PCM_RATE
from .failover import SEQ_STRIDE, announce_call, resume_of
from .handoff import HandoffDesk
from .language import EspeakTTS
from .load import CallLoad
from .models import shared_models
from .recorder import SessionRecorder, recorder_for_call
from .settings import AgentSettings, require
from .tools import prepare_call
from .zh_tts import preload_mandarin

CALL_LOAD = CallLoad()  # calls of this worker process (agent/load.py)
logger = logging.getLogger("agent.worker")



def prewarm(proc: JobProcess) -> None:
    """Before any call (once per process: later calls find everything loaded)."""
    install_log_redaction()  # no caller's card number or e-mail ever reaches a log line
    settings = AgentSettings()
    shared_models(settings)
    preload_mandarin(settings)
    load_knowledge(DialogueSettings())  # embeddings + index, shared by this process's calls
    prepare_call(DialogueSettings())  # the meaning model and its persona/knowledge embeddings, cached per process


def get_recorder(settings: AgentSettings, meta: dict[str, Any]) -> SessionRecorder | None:
    """The process's durable session recorder, when an admin backend is configured."""
    rec = recorder_for_call(settings, meta)  # URL and key from settings only; the call's grant from meta
    if rec is not None:
        call_metrics.track_pending(lambda: rec.pending)
    return rec


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


class CallLog:
    """Per-turn log lines and session records: what was heard and said, with per-stage figures.

    Texts are redacted before they are logged or stored; citations and language come from the
    policy's own turn record for that utterance, found by its words (a caller's turn by what the
    policy heard, an answer by what it said), never by position. A caller's turn also carries the
    tools the policy called about it (``transfer_to_human``, ``create_ticket``, ``end_call``, a
    deployment's own; names and redacted arguments), so the session page shows what was done. The framework may add a caller's
    turn to the conversation before or after the policy has answered it, so a caller's turn waits
    (at most until the next item or the end of the call) for its policy record.
    """

    def __init__(self, session: AgentSession, room: str, recorder: SessionRecorder | None, session_id: str | None) -> None:
        self._room = room
        self._recorder = recorder
        self.session_id = session_id
        self.policy_turns: list[TurnRecord] = []
        self._waiting: dict[str, Any] | None = None  # a caller's turn whose policy record has not come yet
        # a resumed call asks the question its dead worker left unanswered again: it is in the record already
        self.replayed: str | None = None
        session.on("conversation_item_added", self._on_item)

    def on_policy_turn(self, rec: TurnRecord) -> None:
        self.policy_turns.append(rec)
        if self._waiting is not None and _same(rec.user, self._waiting["text"]):
            self._record({**self._waiting, "tool_calls": rec.tool_calls}, rec.language)

    def close(self) -> None:
        """Record a caller's turn still waiting for its policy record (the call ended first)."""
        self._flush()

    def _flush(self) -> None:
        if self._waiting is not None:  # no policy record heard these words (handoff, end of call)
            last = self.policy_turns[-1] if self.policy_turns else None
            self._record(self._waiting, last.language if last else None)

    def _record(self, turn: dict[str, Any], language: str | None) -> None:
        self._waiting = None
        assert self._recorder is not None and self.session_id is not None
        self._recorder.add_turn(self.session_id, language=language, **turn)

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if getattr(item, "type", None) != "message":
            return
        metrics = {k: round(v, 3) for k, v in (item.metrics or {}).items() if isinstance(v, (int, float))}
        text = redact(item.text_content or "")
        interrupted = bool(getattr(item, "interrupted", False))
        durations = {k: v for k, v in metrics.items() if not k.endswith("_at")}
        # the message gives the durations only: the log's PII filter reads a 10-digit clock time
        # ("stopped_speaking_at": 1796237919.4) as a phone number; the clock times are in `metrics`
        logger.info("turn %s: %r %s%s", item.role, text[:160], json.dumps(durations), " (interrupted)" if interrupted else "",
                    extra={"room": self._room, "role": item.role, "metrics": metrics, "interrupted": interrupted})
        call_metrics.observe_turn(item.role, metrics)
        if self._recorder is None or self.session_id is None or item.role not in ("user", "assistant"):
            return
        self._flush()
        turn = {"speaker": item.role, "text": text, "interrupted": interrupted,
                "latency": durations}
        recent = self.policy_turns[-3:]
        if item.role == "user":
            if self.replayed is not None and _same(self.replayed, text):
                self.replayed = None
                return
            heard = next((r for r in reversed(recent) if _same(r.user, text)), None)
            if heard is None:
                self._waiting = turn
            else:
                self._record({**turn, "tool_calls": heard.tool_calls}, heard.language)
            return
        # an answer's citations are those of the policy turn that wrote it (an interrupted one is a
        # prefix of it); what the call says by itself (greeting, apology, handoff) cites nothing
        said = " ".join(text.split())
        answered = next((r for r in reversed(recent) if said and " ".join(r.reply.split()).startswith(said)), None)
        last = self.policy_turns[-1] if self.policy_turns else None
        rec = answered or last
        self._record({**turn, "citations": answered.citations if answered else None}, rec.language if rec else None)


class CallSession(AgentSession):
    """The framework's ``AgentSession``, keeping only its latest events.

    ``AgentSession.emit`` keeps every event of the call (each turn's state changes, transcripts,
    metrics, and the answer's ``SpeechHandle`` with its tasks and chat items) for the report it
    writes at the end of the session: to a local file in console mode, to LiveKit Cloud when
    recording is on. Neither happens on a self-hosted worker, and kept whole the list grows with
    every turn of a long call (a kiosk's call lasts as long as the caller stays). This session keeps
    the latest ``RECENT_EVENTS``; the call's record is the admin's session (``CallLog``).
    """

    RECENT_EVENTS = 128

    def emit(self, event: Any, arg: Any) -> None:
        super().emit(event, arg)
        events = self._recorded_events
        if len(events) > 2 * self.RECENT_EVENTS:  # trimmed in steps, not on every event
            del events[: len(events) - self.RECENT_EVENTS]


class CallAgent(Agent):
    """The call's agent: answers every finished caller turn, except while a colleague has the call.

    ``apology`` gives the words (in the call's language) that replace the rest of an answer when its
    voice raises: the caller hears them, in the same voice or else espeak-ng's, not silence.
    ``spoken`` is the text of the answer being (or last) spoken, as its voice got it: unredacted,
    what an avatar failure says again on the agent's own track.
    """

    def __init__(self, desk: HandoffDesk, *, apology: Callable[[], tuple[str, str]], **kw: Any) -> None:
        super().__init__(**kw)
        self._desk = desk
        self._apology = apology
        self.spoken = ""

    async def on_user_turn_completed(self, turn_ctx: Any, new_message: Any) -> None:
        if self._desk.gate(new_message.text_content or ""):
            raise StopResponse()  # the colleague answers; the turn is in the record

    async def tts_node(self, text: AsyncIterable[str], model_settings: ModelSettings) -> AsyncIterator[rtc.AudioFrame]:
        self.spoken = ""

        async def kept() -> AsyncIterator[str]:
            async for piece in text:
                self.spoken += piece
                yield piece

        try:
            async for frame in Agent.default.tts_node(self, kept(), model_settings):
                yield frame
        except Exception:
            language, apology = self._apology()
            logger.exception("the voice failed on an answer: the caller hears an apology instead")
            call_metrics.SPEECH_FAILURES.labels(stage="tts").inc()
            try:
                async for frame in Agent.default.tts_node(self, _once(apology), model_settings):
                    yield frame
            except Exception:
                logger.exception("the voice failed on the apology too: espeak-ng says it")
                async with EspeakTTS(language=language, sample_rate=self.session.tts.sample_rate).synthesize(apology) as spoken:
                    async for ev in spoken:
                        yield ev.frame


async def _once(text: str) -> AsyncIterator[str]:
    yield text


def turn_handling(settings: AgentSettings, detector: Any) -> dict[str, Any]:
    """When the caller's turn ends and when they interrupt (see the README's settings)."""
    s = settings
    return {
        # Smart Turn judges the end of the turn from the voice; without it, VAD silence alone
        "turn_detection": detector if detector is not None else "vad",
        "endpointing": {"min_delay": s.endpointing_min_delay if detector is not None else max(s.endpointing_min_delay, 0.45),
                        "max_delay": s.endpointing_max_delay},
        # pause/resume is not supported through the avatar's data stream
        "interruption": {"enabled": True, "mode": "vad", "min_duration": s.interrupt_min_duration,
                         "resume_false_interruption": False},
        "preemptive_generation": {"enabled": s.preemptive_generation, "preemptive_tts": True},
    }


def _log_subscription(track: rtc.RemoteTrack, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
    logger.info("receiving %s's %s", participant.identity, "audio" if track.kind == rtc.TrackKind.KIND_AUDIO else "video")


async def entrypoint(ctx: JobContext) -> None:
    """One call."""
    CALL_LOAD.enter(ctx)  # the load LiveKit sees counts this call from now until its job ends
    settings = AgentSettings()
    announce_call(ctx, settings.agent_name)  # on /metrics, for the failover watcher
    meta = json.loads(ctx.job.metadata or "{}") if ctx.job.metadata else {}
    resumed = resume_of(meta)  # > 0: this call's agent worker died; its watcher sent the call here
    # audio only: the agent listens to the caller (and to an operator who takes over); the avatar's video
    # would be received and decoded in this process for nothing (a VP8 decode per call, on the cores the
    # calls share)
    ctx.room.on("track_subscribed", _log_subscription)
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    t_start = time.perf_counter()
    loop = asyncio.get_running_loop()

    # the process's shared models (loaded by prewarm; off the loop if a prewarm failed)
    shared = await loop.run_in_executor(None, shared_models, settings)
    dsettings = DialogueSettings()
    # the operator's persona, knowledge, voices and face for this call (a default, with a log line, when unavailable)
    cfg = await resolve_call(meta, admin_url=settings.admin_url, api_key=settings.admin_api_key,
                             cache_dir=settings.call_cache_dir, embedding_model=dsettings.embedding_model or None)
    models = await loop.run_in_executor(None, shared.for_call, cfg.voices)  # a named Piper voice loads once
    recorder = get_recorder(settings, cfg.recorder_meta()) if cfg.grant else None
    link: AvatarLink | None = None
    if settings.avatar_enabled:
        # dispatch the face now: it joins while the policy, its embeddings and the session are prepared
        link = AvatarLink(
            ctx,
            avatar_agent_name=settings.avatar_agent_name,
            join_timeout=settings.avatar_join_timeout,
            sample_rate=PCM_RATE,
            stall_timeout=settings.avatar_stall_timeout,
            last_answer=lambda: call_agent.spoken or None,
            metadata=cfg.avatar_metadata(),
        )
        link.begin()
    call_log: CallLog | None = None

    def _on_turn(rec: TurnRecord) -> None:
        if call_log is not None:
            call_log.on_policy_turn(rec)

    desk: HandoffDesk | None = None

    async def _on_escalate(state: Any) -> None:
        if desk is not None:
            await desk.request(state)

    # One policy per call: it holds this call's turns and escalation state.
    setup = await loop.run_in_executor(
        None, lambda: prepare_call(dsettings, persona=cfg.persona, index=cfg.index, on_turn=_on_turn,
                                   on_escalate=_on_escalate))
    session: AgentSession = CallSession(
        vad=models.vad,
        stt=models.stt,
        llm=setup.llm,
        tts=models.tts,
        turn_handling=turn_handling(settings, models.turn_detector),
    )
    # "hmm" or "okay" over the answer is a backchannel, not a new turn
    models.stt.ignore_backchannels = lambda: session.agent_state == "speaking"
    models.stt.min_voiced = settings.interrupt_min_duration

    def language() -> str:
        if setup.policy.turns:
            return setup.policy.turns[-1].language
        earlier = next((t.get("language") for t in reversed(cfg.history) if t.get("language")), None)
        return earlier or setup.persona.default_language

    # the recogniser failing on one utterance: the caller is asked to say it again (a voice failing: CallAgent)
    models.stt.on_failure = lambda: session.say(setup.persona.phrase("not_heard", language()))
    session_id = None
    if recorder is not None and resumed and cfg.session_id:
        session_id = recorder.continue_session(cfg.session_id, cfg.grant, first_seq=resumed * SEQ_STRIDE)
    elif recorder is not None:
        session_id = recorder.start_session(
            session_id=cfg.session_id, avatar_id=cfg.avatar.get("id"),
            persona_id=cfg.persona.id if cfg.persona is not None else None,
            room=ctx.room.name, meta={"agent": settings.agent_name, **({"fallbacks": cfg.reasons} if cfg.reasons else {})},
        )
    call_log = CallLog(session, ctx.room.name, recorder, session_id)
    desk = HandoffDesk(
        room=ctx.room, session=session, state=setup.state, persona=setup.persona, recorder=recorder,
        session_id=session_id, listener=shared.listener, timeout=settings.handoff_timeout,
        language=language,
    )

    call_metrics.CALLS_ACTIVE.labels(service="agent").inc()

    async def _on_shutdown(reason: str = "") -> None:
        logger.info("call in %s ended after %.1f s (%s)", ctx.room.name, time.perf_counter() - t_start, reason)
        await desk.aclose()
        st = setup.state
        outcome = desk.outcome or ("escalated" if st.escalated else "completed")
        call_metrics.CALLS_ACTIVE.labels(service="agent").dec()
        call_metrics.CALLS.labels(service="agent", outcome=outcome).inc()
        call_log.close()
        if recorder is not None and session_id is not None:
            recorder.end_session(
                session_id, outcome=outcome,
                escalated=st.escalated, escalation_reason=st.escalation_reason or None,
            )
            await recorder.aflush(timeout=5.0)

    ctx.add_shutdown_callback(_on_shutdown)

    @session.on("close")
    def _on_close(ev: Any) -> None:
        # The caller left (or end_call): end the job so the avatar leaves and the call is recorded as ended.
        ctx.shutdown(reason=f"session closed: {getattr(ev, 'reason', '')}")

    history, unanswered = resumed_conversation(cfg.history) if resumed else (None, None)
    call_agent = CallAgent(desk, instructions=setup.instructions, tools=setup.tools, chat_ctx=history,
                           apology=lambda: (language(), setup.persona.phrase("voice_failed", language())))
    await session.start(
        agent=call_agent,
        room=ctx.room,
        room_options=room_io.RoomOptions(close_on_disconnect=True),
        # no remote session host: it streams every state change, transcript and metric to every participant
        # of the room (lk.agent.session byte streams, several a second to the caller and the face), and
        # nothing here drives or observes a call that way (the widget reads lk.agent.state and transcriptions)
        session_host=False,
    )
    cut_off = setup.persona.phrase("cut_off", language()) if resumed else ""
    # the caller has waited for the takeover: its words are synthesised while the new face joins
    rendered = asyncio.ensure_future(_render(models.tts, cut_off)) if resumed else None
    if link is not None:
        await link.start(session, ctx.room)  # the avatar was dispatched while the call was being prepared
    if resumed:
        logger.warning("call resumed (%d) after its agent worker died: %d earlier turns%s", resumed, len(cfg.history),
                       ", answering the caller's last question again" if unanswered else "",
                       extra={"room": ctx.room.name, "session_id": session_id})
        assert rendered is not None
        frames = await rendered
        if frames:
            session.say(cut_off, audio=_frames(frames))
        else:
            session.say(cut_off)
        if unanswered:
            call_log.replayed = unanswered
            session.generate_reply(user_input=unanswered)
    elif settings.greet:
        session.say(setup.greeting())


async def _render(tts: Any, text: str) -> list[rtc.AudioFrame]:
    """``text`` in the call's voice, whole (empty when the voice fails: the session's own TTS tries again)."""
    frames: list[rtc.AudioFrame] = []
    try:
        async with tts.synthesize(text) as stream:
            async for ev in stream:
                frames.append(ev.frame)
    except Exception:
        logger.exception("could not synthesise %r ahead", text)
        return []
    return frames


async def _frames(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for f in frames:
        yield f


def resumed_conversation(turns: list[dict[str, Any]]) -> tuple[ChatContext, str | None]:
    """The chat context of a resumed call (its recorded turns), without a last caller question that
    got no answer; that question is returned, to be answered again."""
    unanswered = None
    if turns and turns[-1].get("speaker") == "user":
        unanswered = str(turns[-1]["text"])
        turns = turns[:-1]
    ctx = ChatContext.empty()
    for t in turns:
        if t.get("speaker") in ("user", "assistant"):
            ctx.add_message(role=t["speaker"], content=str(t["text"]))
    return ctx, unanswered


def build_server(settings: AgentSettings | None = None) -> AgentServer:
    """The call agent's AgentServer: calls are threads of one process that share its models."""
    s = settings or AgentSettings()
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        # the load LiveKit balances on: calls in progress against what this machine holds
        load_fnc=CALL_LOAD.sized(s.max_calls),
        load_threshold=0.99,
        # Idle job threads, ready with the shared models: a call starts without waiting for one, and
        # the framework's load estimate for a call being accepted is threshold / idle threads
        # (with one, a second caller arriving during the first one's start-up found the worker "full").
        num_idle_processes=max(2, s.max_calls),
        initialize_process_timeout=60.0,
        port=s.http_port,
    )
    server.setup_fnc = prewarm
    server.rtc_session(entrypoint, agent_name=s.agent_name)
    return server


def main() -> None:
    from .production import exit_if_insecure

    exit_if_insecure("the agent", admin_key_names=("DH_ADMIN_API_KEY",))
    settings = AgentSettings()
    call_metrics.serve(settings.metrics_port, "agent")
    call_metrics.WORKER.labels(agent_name=settings.agent_name).set(1)
    for rel, what in ((settings.whisper_model, "Whisper model folder"), (settings.piper_voice, "Piper voice"),
                      (settings.vad_model, "Silero VAD model"), (settings.turn_model, "Smart Turn model")):
        if not rel:
            continue
        require(settings.model_path(rel), what)  # fail before registering, with the set-up command
    cli.run_app(build_server(settings))
