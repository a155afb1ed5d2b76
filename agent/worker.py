"""The call agent: VAD + Whisper STT + dialogue policy + Piper TTS, speaking through the avatar.

Registered with an agent name, so it joins only rooms it is explicitly
dispatched to (a caller token with a room configuration, or the dispatch API).
Models load once per job process in ``prewarm``; all model compute runs in
threads so the event loop only moves media.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli, room_io
from livekit.plugins import silero

from dialogue import DialogueSettings, greeting, load_policy

from .avatar_link import AvatarLink
from .policy_llm import PolicyLLM
from .settings import AgentSettings, require
from .stt import WhisperSTT
from .tts import PiperTTS

logger = logging.getLogger("agent.worker")

_active_calls = 0


def load_models(settings: AgentSettings) -> dict[str, Any]:
    """Load VAD, STT and TTS from the local models folder (clear error if one is missing)."""
    s = settings
    return {
        "vad": silero.VAD.load(
            onnx_file_path=require(s.model_path(s.vad_model), "Silero VAD model"),
            min_silence_duration=s.min_silence,
        ),
        "stt": WhisperSTT(
            require(s.model_path(s.whisper_model), "Whisper model folder"),
            compute_type=s.whisper_compute_type,
            cpu_threads=s.whisper_threads,
            language=s.whisper_language,
        ),
        "tts": PiperTTS(require(s.model_path(s.piper_voice), "Piper voice")),
    }


def prewarm(proc: JobProcess) -> None:
    proc.userdata.update(load_models(AgentSettings()))
    # The policy may load embeddings and a knowledge index: never on the call's event loop.
    proc.userdata["policy"] = load_policy(DialogueSettings())


class ServiceAgent(Agent):
    """The customer-service persona on the call."""

    def __init__(self, instructions: str) -> None:
        super().__init__(instructions=instructions)


def log_turn_metrics(session: AgentSession, room: str) -> None:
    """One log line per turn with the per-stage figures an operator needs."""

    @session.on("conversation_item_added")
    def _on_item(ev: Any) -> None:
        item = ev.item
        if getattr(item, "type", None) != "message":
            return
        metrics = {k: round(v, 3) for k, v in (item.metrics or {}).items() if isinstance(v, (int, float))}
        logger.info(
            "turn %s: %r %s", item.role, (item.text_content or "")[:120], json.dumps(metrics),
            extra={"room": room, "role": item.role, "metrics": metrics},
        )


async def entrypoint(ctx: JobContext) -> None:
    """One call."""
    global _active_calls
    settings = AgentSettings()
    meta = json.loads(ctx.job.metadata or "{}") if ctx.job.metadata else {}
    await ctx.connect()
    _active_calls += 1
    t_start = time.perf_counter()

    models = ctx.proc.userdata
    dsettings = DialogueSettings()
    if "policy" not in models:  # a failed prewarm: load off the loop
        loop = asyncio.get_running_loop()
        models.update(await loop.run_in_executor(None, load_models, settings))
        models["policy"] = await loop.run_in_executor(None, load_policy, dsettings)
    session: AgentSession = AgentSession(
        vad=models["vad"],
        stt=models["stt"],
        llm=PolicyLLM(models["policy"]),
        tts=models["tts"],
        turn_handling={
            "turn_detection": "vad",
            "endpointing": {"min_delay": 0.2, "max_delay": 3.0},
            # pause/resume is not supported through the avatar's data stream
            "interruption": {"enabled": True, "mode": "vad", "min_duration": 0.4, "resume_false_interruption": False},
        },
    )
    log_turn_metrics(session, ctx.room.name)

    async def _on_shutdown(reason: str = "") -> None:
        global _active_calls
        _active_calls -= 1
        logger.info("call in %s ended after %.1f s (%s)", ctx.room.name, time.perf_counter() - t_start, reason)

    ctx.add_shutdown_callback(_on_shutdown)

    await session.start(
        agent=ServiceAgent(dsettings.system_prompt),
        room=ctx.room,
        room_options=room_io.RoomOptions(close_on_disconnect=True),
    )
    if settings.avatar_enabled:
        link = AvatarLink(
            ctx,
            avatar_agent_name=settings.avatar_agent_name,
            join_timeout=settings.avatar_join_timeout,
            sample_rate=settings.avatar_sample_rate,
            metadata={k: v for k, v in meta.items() if k in ("avatar_dir", "engine", "avatar_id")},
        )
        await link.start(session)
    if settings.greet:
        session.say(greeting(dsettings))


def build_server(settings: AgentSettings | None = None) -> AgentServer:
    """The call agent's AgentServer: one process per call, capacity-based load."""
    s = settings or AgentSettings()
    server = AgentServer(
        load_fnc=lambda: min(1.0, _active_calls / max(1, s.max_calls)),
        load_threshold=0.99,
        num_idle_processes=1,
        initialize_process_timeout=60.0,
        port=s.http_port,
    )
    server.setup_fnc = prewarm
    server.rtc_session(entrypoint, agent_name=s.agent_name)
    return server


def main() -> None:
    settings = AgentSettings()
    for rel, what in ((settings.whisper_model, "Whisper model folder"), (settings.piper_voice, "Piper voice"),
                      (settings.vad_model, "Silero VAD model")):
        require(settings.model_path(rel), what)  # fail before registering, with the set-up command
    cli.run_app(build_server(settings))
