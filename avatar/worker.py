"""The avatar worker: a LiveKit agent (explicit dispatch) that renders the face of a call.

The agent dispatches it into the call's room with metadata naming the agent's
identity. It joins with kind ``agent`` and ``lk.publish_on_behalf`` set to that
identity, receives the agent's speech over the data-stream avatar contract, and
publishes ``avatar_video`` + ``avatar_audio`` in sync through ``AvatarRunner``.

Jobs run as threads of one process so that every call shares one loaded engine
(weights, caches) and one pool of render threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobRequest, cli
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, DataStreamAudioReceiver
from pydantic_settings import SettingsError

from agent import metrics as call_metrics
from agent.avatar_link import reconnecting, rejoined
from agent.call_config import fetch_avatar_assets
from agent.contract import AVATAR_STREAM, PING_RPC, REJOIN_WITHIN, AvatarDispatch, avatar_identity
from agent.load import CallLoad

from .engines import Engine, create_engine
from .generator import EngineVideoGenerator
from .settings import AvatarSettings
from .sync import AudioClockedSync

CALL_LOAD = CallLoad()  # calls of this worker process (agent/load.py)
logger = logging.getLogger("avatar.worker")

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def get_engine(settings: AvatarSettings, name: str | None = None) -> Engine:
    """The process-wide engine called ``name``, loaded once and shared by all calls."""
    name = name or settings.engine
    with _engines_lock:
        if name not in _engines:
            t0 = time.perf_counter()
            # AVATAR_ENGINE_OPTIONS are the configured engine's own settings: an avatar prepared
            # for another engine gets that engine's defaults at the worker's size (each engine
            # refuses names it does not know).
            options = settings.engine_options if name == settings.engine else {}
            _engines[name] = create_engine(
                name, width=settings.width, height=settings.height, fps=settings.fps, **options
            )
            logger.info("engine %s loaded in %.2f s", name, time.perf_counter() - t0)
        return _engines[name]


def _render_executor(settings: AvatarSettings) -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.render_threads, thread_name_prefix="render")
    return _executor


async def on_request(req: JobRequest) -> None:
    """Accept with the identity and attributes that make us the agent's face."""
    try:
        meta = AvatarDispatch.from_metadata(req.job.metadata)
    except ValueError as e:
        logger.error("rejecting avatar job %s: %s", req.id, e)
        await req.reject()
        return
    await req.accept(
        name="avatar",
        identity=avatar_identity(meta.agent_identity),
        attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: meta.agent_identity},
    )


async def entrypoint(ctx: JobContext) -> None:
    """Render one call's avatar until the room ends or the agent leaves."""
    CALL_LOAD.enter(ctx)  # the load LiveKit sees counts this call from now until its job ends
    settings = AvatarSettings()
    meta = AvatarDispatch.from_metadata(ctx.job.metadata)
    agent_identity = meta.agent_identity
    engine = get_engine(settings, meta.engine)
    fetched = await fetch_avatar_assets(meta, admin_url=settings.admin_url, api_key=settings.admin_api_key,
                                        cache_dir=settings.cache_dir)
    avatar_dir = fetched or settings.avatar_dir or None

    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)  # it only needs the agent's data streams
    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(
        _render_executor(settings), engine.open_session, Path(avatar_dir) if avatar_dir else None
    )
    info = engine.info
    mouth_box = getattr(session, "mouth_box", None)
    if mouth_box:
        # Lets a viewer (and the tests) find the mouth without a face detector.
        await ctx.room.local_participant.set_attributes({"dh.mouth_box": ",".join(str(int(v)) for v in mouth_box)})

    # the agent's speech (PCM_RATE) is resampled once, at the generator's input, to the engine's
    # rate; the room gets the audio the engine rendered, at that rate
    gen = EngineVideoGenerator(session, executor=_render_executor(settings))
    receiver = DataStreamAudioReceiver(ctx.room, sender_identity=agent_identity)
    runner = AvatarTrackRunner(
        ctx.room,
        max_bitrate=settings.video_max_bitrate,
        video_delay_ms=settings.sync_video_delay_ms,
        # the audio source's queue: what is queued here is latency before the caller hears the first
        # word (the synchroniser drops queued idle silence when speech starts)
        _queue_size_ms=settings.sync_queue_ms,
        audio_recv=receiver,
        video_gen=gen,
        options=AvatarOptions(
            video_width=info.width,
            video_height=info.height,
            video_fps=info.fps,
            audio_sample_rate=info.sample_rate,
            audio_channels=1,
        ),
    )
    gen.attach(receiver, runner.av_sync.clear_queue)

    @ctx.room.local_participant.register_rpc_method(PING_RPC)
    async def _ping(_data: rtc.RpcInvocationData) -> str:
        # the agent's watchdog asks when a segment's playback_started is missing: are we playing?
        last = gen.last_speech_at
        return json.dumps({"speech_age": None if last is None else round(time.monotonic() - last, 3)})

    done = asyncio.Event()

    rejoining: set[asyncio.Future[None]] = set()

    def _on_disconnect(p: Any) -> None:
        if p.identity != agent_identity:
            return
        if reconnecting(ctx.room):  # a livekit-server restart: the agent is rejoining with us
            logger.warning("lost agent %s while the room reconnects: waiting up to %.0f s for it", agent_identity,
                           REJOIN_WITHIN)
            task = asyncio.ensure_future(_await_rejoin())
            rejoining.add(task)
            task.add_done_callback(rejoining.discard)
        else:
            logger.info("agent %s left: ending the avatar", agent_identity)
            done.set()

    async def _await_rejoin() -> None:
        if await rejoined(ctx.room, agent_identity):
            logger.info("agent %s is back after the room reconnected", agent_identity)
        else:
            logger.info("agent %s did not come back: ending the avatar", agent_identity)
            done.set()

    ctx.room.on("participant_disconnected", _on_disconnect)
    started = time.perf_counter()
    call_metrics.CALLS_ACTIVE.labels(service="avatar").inc()

    async def _cleanup() -> None:
        call_metrics.CALLS_ACTIVE.labels(service="avatar").dec()
        call_metrics.CALLS.labels(service="avatar", outcome="ended").inc()
        await runner.aclose()
        await gen.aclose()
        wall = time.perf_counter() - started
        sync = runner.sync
        logger.info(
            "avatar call ended: %d frames in %.1f s, engine %.1f ms/frame; audio queue timer behind wall time by "
            "%.0f ms in all, %d idle frames dropped at answer starts",
            gen.frames_rendered, wall, 1000 * gen.render_seconds / max(1, gen.frames_rendered),
            1000 * sync.slip_s, sync.dropped_silence,
        )

    ctx.add_shutdown_callback(_cleanup)
    await runner.start()
    logger.info("avatar %s rendering for %s in room %s", info.name, agent_identity, ctx.room.name)
    # End the job when the agent leaves, or if rendering/publishing fails (the agent then
    # sees the avatar leave and falls back to audio only instead of facing a frozen face).
    left = asyncio.ensure_future(done.wait())
    running = asyncio.ensure_future(runner.wait_for_complete())
    finished, _ = await asyncio.wait({left, running}, return_when=asyncio.FIRST_COMPLETED)
    if running in finished and running.exception() is not None:
        logger.error("avatar rendering failed: leaving the call", exc_info=running.exception())
    for t in (left, running):
        t.cancel()
    ctx.shutdown(reason="agent left" if left in finished else "avatar failed")


class AvatarTrackRunner(AvatarRunner):
    """``AvatarRunner`` whose video keeps its frame rate under load and follows its audio's clock.

    Lip-sync needs every frame: WebRTC's default (keep resolution) drops frames
    when the encoder's CPU is short, so we ask it to keep the frame rate, send a
    single layer (no simulcast copies to encode) and cap the bitrate. Each frame
    leaves when its audio starts to play (:class:`~avatar.sync.AudioClockedSync`).
    """

    def __init__(self, *args: Any, max_bitrate: int, video_delay_ms: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_bitrate = max_bitrate
        # one clock for voice and face (avatar/sync.py) instead of the stock synchroniser's two
        self.sync = AudioClockedSync(
            audio_source=self._audio_source, video_source=self._video_source, video_fps=self._options.video_fps,
            queue_size_ms=self._queue_size_ms, video_delay_ms=video_delay_ms,
        )
        stock, self._av_sync = self._av_sync, self.sync  # the runner pushes into ours
        self._stock_closed = asyncio.ensure_future(stock.aclose())  # it has not captured anything

    async def _publish_track(self) -> None:
        async with self._lock:
            if self._video_publication is not None:
                return
            await self._room_connected_fut
            lp = self._room.local_participant
            audio = rtc.LocalAudioTrack.create_audio_track("avatar_audio", self._audio_source)
            self._audio_publication = await lp.publish_track(
                audio, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, stream=AVATAR_STREAM)
            )
            await self._audio_publication.wait_for_subscription()
            video = rtc.LocalVideoTrack.create_video_track("avatar_video", self._video_source)
            opts = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA,
                stream=AVATAR_STREAM,  # with the audio: the caller plays them in sync
                simulcast=False,
                video_encoding=rtc.VideoEncoding(max_framerate=self._options.video_fps, max_bitrate=self._max_bitrate),
                degradation_preference=rtc.DegradationPreference.MAINTAIN_FRAMERATE,
            )
            self._video_publication = await lp.publish_track(video, opts)


def build_server(settings: AvatarSettings | None = None) -> AgentServer:
    """The avatar worker's AgentServer (threads: one shared engine per process)."""
    s = settings or AvatarSettings()
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        load_fnc=CALL_LOAD.sized(s.max_calls),
        load_threshold=0.99,
        # Idle job threads, ready with the shared models: a call starts without waiting for one, and
        # the framework's load estimate for a call being accepted is threshold / idle threads
        # (with one, a second caller arriving during the first one's start-up found the worker "full").
        num_idle_processes=max(2, s.max_calls),
        port=s.http_port,
    )

    def _prewarm(_proc: Any) -> None:
        get_engine(s)

    server.setup_fnc = _prewarm
    server.rtc_session(entrypoint, agent_name=s.agent_name, on_request=on_request)
    return server


def main() -> None:
    from agent.production import exit_if_insecure

    exit_if_insecure("the avatar worker", admin_key_names=("AVATAR_ADMIN_API_KEY", "DH_ADMIN_API_KEY"))
    try:
        settings = AvatarSettings()
    except SettingsError as e:  # e.g. AVATAR_ENGINE_OPTIONS that is not a JSON object
        raise SystemExit(f"avatar worker: {e} (AVATAR_ENGINE_OPTIONS must be a JSON object)") from None
    get_engine(settings)  # fail fast with a clear error before registering
    call_metrics.serve(settings.metrics_port, "avatar")
    cli.run_app(build_server(settings))
