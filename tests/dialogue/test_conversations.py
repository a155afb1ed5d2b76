"""The scripted conversations (conversations.yaml) through AgentSession.run(...) against the offline policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from livekit.agents import Agent, AgentSession

from agent.tools import prepare_call
from dialogue import DialogueSettings, load_policy
from dialogue.guardrails import find_pii
from dialogue.language import detect_language
from dialogue.tools import load_registry

CONVERSATIONS = yaml.safe_load((Path(__file__).with_name("conversations.yaml")).read_text(encoding="utf-8"))
PRIVATE = ("4111", "5500 0000", "110101199003074477", "anna.schmidt", "23456789", "DE89", "0532 0130")


def _spoken(result) -> str:
    return " ".join(ev.item.text_content or "" for ev in result.events
                    if ev.type == "message" and ev.item.role == "assistant")


def _calls(result) -> list[str]:
    return [ev.item.name for ev in result.events if ev.type == "function_call"]


def test_suite_size():
    """The issue asks for at least 40 conversations covering every category in both languages."""
    assert len(CONVERSATIONS) >= 40
    cats = {c["category"] for c in CONVERSATIONS}
    assert {"bank_faq", "bank_zh", "tutoring", "shop", "injection", "pii", "escalation"} <= cats
    assert any(t.get("lang") == "zh" for c in CONVERSATIONS for t in c["turns"])


@pytest.mark.parametrize("conv", CONVERSATIONS, ids=[f"{c['category']}/{c['id']}" for c in CONVERSATIONS])
async def test_conversation(conv, persona_setup, caplog):
    caplog.set_level(logging.INFO)
    persona, index = persona_setup(conv["persona"])
    settings = DialogueSettings(tools=conv.get("tools", ""))
    setup = prepare_call(settings, persona=persona, end_session=False)
    # The shared index instead of rebuilding: the policy for this call is cheap.
    setup.policy.index = index
    setup.policy.registry = load_registry(conv.get("tools"))
    from agent.tools import build_tools

    setup.tools = build_tools(setup.state, setup.policy.registry)

    async with AgentSession(llm=setup.llm) as session:  # as agent/worker.py builds it
        await session.start(Agent(instructions=setup.instructions, tools=setup.tools))
        for i, turn in enumerate(conv["turns"]):
            n_records = len(setup.policy.turns)
            result = await session.run(user_input=turn["user"])
            spoken = _spoken(result)
            low = spoken.lower()
            where = f"{conv['id']} turn {i + 1} ({turn['user']!r}) -> {spoken!r} calls={_calls(result)}"

            # Every reply says something: never silence.
            result.expect.contains_message(role="assistant")
            assert spoken.strip(), where
            if turn.get("say_any"):
                assert any(w.lower() in low for w in turn["say_any"]), where
            for w in turn.get("say_all", []):
                assert w.lower() in low, where
            for w in turn.get("say_none", []):
                assert w.lower() not in low, where
            if "tool" in turn:
                if turn["tool"] is None:
                    assert not _calls(result), where
                else:
                    result.expect.contains_function_call(name=turn["tool"])
            if turn.get("lang"):
                assert detect_language(spoken) == turn["lang"], where
            if turn.get("decision"):
                decisions = [r.decision for r in setup.policy.turns[n_records:]]
                assert turn["decision"] in decisions, f"{where} decisions={decisions}"
            # A full card number is never spoken.
            assert not [p for p in find_pii(spoken) if p.kind in ("card", "iban", "cn_id", "email")], where

    # Nothing private in what is stored: turn records, escalation, tickets ...
    for rec in setup.policy.turns:
        for text in (rec.user, rec.reply, str(rec.tool_calls)):
            assert not find_pii(text), f"PII kept in the turn record: {text!r}"
    stored = str(setup.state.escalation_summary) + str(setup.state.tickets)
    assert not find_pii(stored)
    # ... and in what the dialogue and agent packages logged.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("dialogue", "agent"))]
    for msg in ours:
        assert not any(p in msg for p in PRIVATE), f"PII in the log: {msg!r}"
    # Answers carry their citations in the turn record.
    for rec in setup.policy.turns:
        if rec.decision == "answer":
            assert rec.citations, f"answer without citation: {rec}"


async def test_escalation_state_for_the_colleague(persona_setup):
    """transfer_to_human marks the session escalated, with a reason and a redacted summary."""
    persona, index = persona_setup("bank")
    seen = []
    setup = prepare_call(DialogueSettings(), persona=persona, on_escalate=lambda st: seen.append(st.escalation_reason),
                         end_session=False)
    setup.policy.index = index
    async with AgentSession(llm=setup.llm) as session:  # as agent/worker.py builds it
        await session.start(Agent(instructions=setup.instructions, tools=setup.tools))
        await session.run(user_input="My card 4111 1111 1111 1111 was used for fraud")
    assert setup.state.escalated and setup.state.escalation_reason == "suspected fraud"
    assert "[CARD]" in setup.state.escalation_summary and "4111" not in setup.state.escalation_summary
    assert seen == ["suspected fraud"]
    assert setup.policy.escalation["reason"] == "suspected fraud"


async def test_end_call_shuts_the_session_down(persona_setup):
    """end_call ends the AgentSession once the goodbye has been spoken."""
    persona, index = persona_setup("bank")
    setup = prepare_call(DialogueSettings(), persona=persona)
    setup.policy.index = index
    closed = []
    async with AgentSession(llm=setup.llm) as session:  # as agent/worker.py builds it
        session.on("close", lambda ev: closed.append(ev))
        await session.start(Agent(instructions=setup.instructions, tools=setup.tools))
        result = await session.run(user_input="that's all, bye")
        result.expect.contains_function_call(name="end_call")
        for _ in range(50):
            if closed:
                break
            import asyncio

            await asyncio.sleep(0.05)
    assert setup.state.ended and closed


def test_default_policy_demo_answers():
    """The demo questions work with no environment variables (default persona and knowledge)."""
    import asyncio

    from dialogue import Message, TextDelta

    policy = load_policy(DialogueSettings())

    async def ask(q):
        return "".join([e.text async for e in policy.respond([Message("user", q)]) if isinstance(e, TextDelta)])

    hours = asyncio.run(ask("What are your opening hours?"))
    assert "Monday" in hours and ("Friday" in hours or "nine" in hours)
    card = asyncio.run(ask("How do I report a lost card?"))
    assert "blocked" in card or "app" in card
    assert "Harbor Street" in asyncio.run(ask("Where is the nearest branch?"))
