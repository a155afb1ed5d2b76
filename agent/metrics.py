"""Prometheus metrics of the agent and the avatar worker (the admin has its own: /metrics).

Each worker serves them on ``AGENT_METRICS_PORT`` / ``AVATAR_METRICS_PORT`` (0: off, the
default on a laptop; compose: 9101 and 9102). Labels are bounded: no room, caller or text.

* ``dh_calls_active{service}``, ``dh_calls_total{service,outcome}``: calls in progress, ended
* ``dh_turn_stage_seconds{role,stage}``: the framework's per-turn figures (user: VAD/ASR and
  end-of-turn delays; assistant: LLM first token, TTS first byte, end-to-end)
* ``dh_recorder_pending_events``: session events not yet acknowledged by the admin (the spool)
* ``dh_handoff_waiting``: callers waiting for a colleague
* ``dh_speech_failures_total{stage}``: utterances the recogniser (``stt``) or a voice (``tts``)
  failed on; the caller was asked to say it again / heard an apology instead
* ``dh_avatar_frames_total``, ``dh_avatar_render_seconds``: frames rendered (rate = fps), engine
  time per rendered chunk
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger("agent.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

CALLS_ACTIVE = Gauge("dh_calls_active", "Calls in progress in this worker", ["service"])
CALLS = Counter("dh_calls", "Calls ended in this worker", ["service", "outcome"])
TURN_STAGE = Histogram("dh_turn_stage_seconds", "Per-turn stage latency (seconds)", ["role", "stage"],
                       buckets=LATENCY_BUCKETS)
HANDOFF_WAITING = Gauge("dh_handoff_waiting", "Callers waiting for a colleague")
SPEECH_FAILURES = Counter("dh_speech_failures", "Utterances the recogniser or a voice failed on", ["stage"])
# One series per call in progress (room, job): what the failover watcher (agent/failover.py) re-dispatches
# when this worker stops answering; removed when the call ends.
CALL = Gauge("dh_agent_call", "A call in progress in this agent worker", ["room", "job", "agent_name"])
WORKER = Gauge("dh_agent_worker", "The dispatch name this agent worker registered under", ["agent_name"])
RECORDER_PENDING = Gauge("dh_recorder_pending_events", "Session events not yet acknowledged by the admin")
FRAMES = Counter("dh_avatar_frames", "Video frames rendered by the avatar engine")
RENDER = Histogram("dh_avatar_render_seconds", "Engine time per rendered chunk (seconds)",
                   buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56))
STAGES = {  # the framework's metric names -> stage labels (anything else is not exported)
    "transcription_delay": "transcription", "end_of_turn_delay": "end_of_turn",
    "on_user_turn_completed_delay": "turn_hook", "llm_node_ttft": "llm_first_token",
    "tts_node_ttfb": "tts_first_byte", "e2e_latency": "end_to_end",
}


def observe_turn(role: str, metrics: dict[str, float]) -> None:
    """One conversation item's figures (``item.metrics``) into the stage histograms."""
    for key, value in metrics.items():
        stage = STAGES.get(key)
        if stage is not None and isinstance(value, (int, float)) and 0 <= value < 600:
            TURN_STAGE.labels(role=role, stage=stage).observe(value)


def track_pending(read: Callable[[], int]) -> None:
    RECORDER_PENDING.set_function(lambda: float(read()))


def serve(port: int, service: str) -> None:
    """Start this process's /metrics endpoint (nothing when ``port`` is 0)."""
    if port <= 0:
        return
    start_http_server(port, addr="0.0.0.0")
    CALLS_ACTIVE.labels(service=service).set(0)
    logger.info("%s metrics on :%d/metrics", service, port)
