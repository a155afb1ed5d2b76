"""A long call does not keep its whole past: the session keeps a bounded part of its events.

The framework's AgentSession holds every event it emits (each answer's SpeechHandle with its tasks
and chat items among them) until the session ends; the call's session (agent.worker.CallSession,
as worker.py builds it) keeps only the latest. Measured by what stays alive, not by a setting.
"""

from __future__ import annotations

import gc

from livekit.agents import Agent, AgentSession
from livekit.agents.voice.speech_handle import SpeechHandle

from agent.tools import prepare_call
from agent.worker import CallSession
from dialogue import DialogueSettings

QUESTIONS = ["What are your opening hours?", "where is the nearest branch", "how much is the fee for a current account"]


def _answers_alive() -> int:
    gc.collect()
    return sum(isinstance(o, SpeechHandle) for o in gc.get_objects())


async def _talk(session: AgentSession, turns: int) -> str:
    """Ask ``turns`` questions; what the last answer said."""
    for i in range(turns):
        result = await session.run(user_input=QUESTIONS[i % len(QUESTIONS)])
    return " ".join(e.item.text_content or "" for e in result.events if e.type == "message")


async def _growth(session_type: type[AgentSession], turns: int) -> tuple[int, str]:
    setup = prepare_call(DialogueSettings(), end_session=False)
    async with session_type(llm=setup.llm) as session:
        await session.start(Agent(instructions=setup.instructions, tools=setup.tools))
        await _talk(session, turns)
        first = _answers_alive()
        said = await _talk(session, turns)
        return _answers_alive() - first, said


async def test_the_framework_session_keeps_every_answer():
    """The control: without the bound, each turn's answer stays alive until the call ends."""
    grown, _ = await _growth(AgentSession, 40)
    assert grown >= 35, grown


async def test_a_call_session_keeps_a_bounded_past_and_still_answers():
    grown, said = await _growth(CallSession, 40)
    # the session keeps between RECENT_EVENTS and twice that (trimmed in steps): 16-32 text turns'
    # events, so the count saws up and down by at most 16 instead of rising by one a turn
    assert grown <= 16, f"{grown} more answers alive after 40 more turns"
    assert "station" in said.lower() or "fee" in said.lower() or "monday" in said.lower(), said
