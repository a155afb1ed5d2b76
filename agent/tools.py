"""The call's function tools (transfer_to_human, create_ticket, end_call, deployment tools) and the agent set-up.

The dialogue policy decides *when* a tool is called; this module does what the
tool means for the call: marks the session escalated with a reason and a
summary for the colleague, records tickets, ends the session, runs a
deployment's own tools. Everything kept in :class:`CallState` is redacted.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm
from livekit.agents.llm import ToolResult, function_tool
from livekit.agents.voice import RunContext

from dialogue import DialogueSettings, GroundedPolicy, Persona, ToolRegistry, TurnRecord, load_persona, load_policy
from dialogue.guardrails import redact
from dialogue.tools import CREATE_TICKET, END_CALL, TRANSFER_TO_HUMAN, DeploymentTool

from .policy_llm import PolicyLLM

logger = logging.getLogger("agent.tools")

Callback = Callable[..., Any]


@dataclass
class CallState:
    """What the tools did during one call (redacted): escalation, tickets, end of call.

    ``on_escalate(state)`` and ``on_ticket(ticket) -> ticket_id | None`` let the
    worker notify people or the admin backend; both may be async.
    """

    escalated: bool = False
    escalation_reason: str = ""
    escalation_summary: str = ""
    tickets: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    end_reason: str = ""
    end_session: bool = True  # end_call shuts the AgentSession down once the goodbye is spoken
    on_escalate: Callback | None = None
    on_ticket: Callback | None = None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _raw(spec) -> dict[str, Any]:
    return {"name": spec.name, "description": spec.description, "parameters": spec.parameters}


def build_tools(state: CallState, registry: ToolRegistry | None = None) -> list[llm.Tool]:
    """The function tools of a call: the three core tools plus the deployment's registry."""

    @function_tool(raw_schema=_raw(TRANSFER_TO_HUMAN))
    async def transfer_to_human(raw_arguments: dict[str, object], context: RunContext) -> ToolResult:
        state.escalated = True
        state.escalation_reason = redact(str(raw_arguments.get("reason", "")))
        state.escalation_summary = redact(str(raw_arguments.get("summary", "")))
        logger.info("call escalated: %s", state.escalation_reason)
        if state.on_escalate:
            await _maybe_await(state.on_escalate(state))
        # The policy already told the caller; nothing more to generate.
        return ToolResult("a colleague has been asked to take over", reply_required=False)

    @function_tool(raw_schema=_raw(CREATE_TICKET))
    async def create_ticket(raw_arguments: dict[str, object], context: RunContext) -> str:
        ticket = {"subject": redact(str(raw_arguments.get("subject", ""))),
                  "details": redact(str(raw_arguments.get("details", "")))}
        ticket_id = None
        if state.on_ticket:
            ticket_id = await _maybe_await(state.on_ticket(ticket))
        ticket["ticket_id"] = str(ticket_id or f"T-{uuid.uuid4().hex[:6].upper()}")
        state.tickets.append(ticket)
        return json.dumps({"ticket_id": ticket["ticket_id"]})

    @function_tool(raw_schema=_raw(END_CALL))
    async def end_call(raw_arguments: dict[str, object], context: RunContext) -> ToolResult:
        state.ended = True
        state.end_reason = redact(str(raw_arguments.get("reason", "")))
        if state.end_session:
            # Shut down after the goodbye has been spoken, not in the middle of it.
            context.speech_handle.add_done_callback(lambda _: context.session.shutdown())
        return ToolResult("call ended", reply_required=False)

    tools: list[llm.Tool] = [transfer_to_human, create_ticket, end_call]
    for dtool in registry or []:
        tools.append(_deployment_tool(dtool))
    return tools


def _deployment_tool(dtool: DeploymentTool) -> llm.Tool:
    async def run(raw_arguments: dict[str, object], context: RunContext) -> str:
        try:
            result = await dtool.run(**raw_arguments)
        except Exception as e:  # the policy turns this into an apology and an offer of a person
            logger.exception("deployment tool %s failed", dtool.name)
            return json.dumps({"error": redact(str(e))})
        return json.dumps(result, ensure_ascii=False, default=str) if not isinstance(result, str) else result

    return function_tool(run, raw_schema=_raw(dtool.spec))


@dataclass
class CallSetup:
    """Everything the worker needs to run one call with a persona."""

    persona: Persona
    policy: GroundedPolicy
    llm: PolicyLLM
    tools: list[llm.Tool]
    state: CallState

    @property
    def instructions(self) -> str:
        """The persona's rules as agent instructions (the policy applies them; an LLM also reads them)."""
        return self.persona.system_prompt(self.persona.default_language)

    def greeting(self, language: str | None = None) -> str:
        """The persona's greeting."""
        return self.persona.greeting_for(language)


def prepare_call(settings: DialogueSettings | None = None, *, persona: Persona | dict | None = None,
                 index: Any = None, on_turn: Callable[[TurnRecord], Any] | None = None,
                 on_escalate: Callback | None = None, on_ticket: Callback | None = None,
                 end_session: bool = True) -> CallSetup:
    """Build the policy, tools and state of one call.

    ``persona``/``index`` are the call's own (from the admin, :mod:`agent.call_config`); without
    them the deployment's default persona and knowledge (``DIALOGUE_*``, shared between calls).
    """
    s = settings or DialogueSettings()
    p = persona if isinstance(persona, Persona) else load_persona(persona if persona is not None else s.persona_file)
    policy = load_policy(s, persona=p, index=index, on_turn=on_turn)
    # the meaning model's persona and knowledge embeddings (cached per process) are built here,
    # off the call's event loop, not on its first question
    getattr(policy, "understanding", None)
    state = CallState(on_escalate=on_escalate, on_ticket=on_ticket, end_session=end_session)
    return CallSetup(persona=p, policy=policy, llm=PolicyLLM(policy), tools=build_tools(state, policy.registry), state=state)
