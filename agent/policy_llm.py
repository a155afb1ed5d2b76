"""Adapts the dialogue policy (plain Python, no LiveKit) to the agents framework's LLM interface.

The session then measures it like any LLM (llm_node_ttft), runs its tool calls as
function tools, and `AgentSession.run(...)` tests can assert on its messages.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from livekit.agents import llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.utils import shortuuid

from dialogue import Message, Policy, PolicyError, TextDelta, ToolCall, ToolSpec
from dialogue.language import detect_language

logger = logging.getLogger("agent.policy")

APOLOGY = "Sorry, I am having trouble answering right now. Could you say that again, or shall I connect you to a person?"
APOLOGY_ZH = "抱歉，我现在无法回答。请您再说一遍，或者需要为您转接人工客服吗？"


def to_messages(chat_ctx: llm.ChatContext) -> list[Message]:
    """The framework's chat context as the policy's plain messages."""
    out: list[Message] = []
    for item in chat_ctx.items:
        if item.type == "message":
            role = "system" if item.role in ("system", "developer") else item.role
            text = item.text_content or ""
            if text:
                out.append(Message(role=role, content=text))
        elif item.type == "function_call_output":
            out.append(Message(role="tool", content=str(item.output), name=item.name))
    return out


def to_tool_specs(tools: list[Any]) -> list[ToolSpec]:
    """Function tools as plain JSON-schema specs."""
    specs: list[ToolSpec] = []
    for tool in tools:
        if isinstance(tool, llm.FunctionTool):
            schema = llm.utils.build_legacy_openai_schema(tool)["function"]
            specs.append(ToolSpec(schema["name"], schema.get("description", ""), schema["parameters"]))
        elif isinstance(tool, llm.RawFunctionTool):
            raw = tool.info.raw_schema
            specs.append(ToolSpec(raw["name"], raw.get("description", ""), raw.get("parameters", {})))
    return specs


class PolicyLLM(llm.LLM):
    """An ``llm.LLM`` whose answers come from a :class:`dialogue.Policy`."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    @property
    def model(self) -> str:
        return getattr(self.policy, "model", self.policy.name)

    @property
    def provider(self) -> str:
        return f"dialogue.{self.policy.name}"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _PolicyStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    async def aclose(self) -> None:
        await self.policy.aclose()
        await super().aclose()


class _PolicyStream(llm.LLMStream):
    async def _run(self) -> None:
        request_id = shortuuid("policy_")
        policy: Policy = self._llm.policy  # type: ignore[attr-defined]
        said_something = False
        try:
            async for event in policy.respond(to_messages(self._chat_ctx), to_tool_specs(self._tools)):
                if isinstance(event, TextDelta) and event.text:
                    said_something = True
                    self._event_ch.send_nowait(
                        llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=event.text))
                    )
                elif isinstance(event, ToolCall):
                    call = llm.FunctionToolCall(
                        name=event.name, arguments=json.dumps(event.arguments), call_id=event.call_id
                    )
                    self._event_ch.send_nowait(
                        llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", tool_calls=[call]))
                    )
        except Exception as e:  # PolicyError or a bug: the caller hears an apology either way
            # Never leave the caller in silence: apologise once, the error goes to the log.
            if isinstance(e, PolicyError):
                logger.error("dialogue policy failed: %s", e)
            else:
                logger.exception("dialogue policy crashed")
            if not said_something:
                last_user = next((m.content for m in reversed(to_messages(self._chat_ctx)) if m.role == "user"), "")
                text = APOLOGY_ZH if detect_language(last_user) == "zh" else APOLOGY
                self._event_ch.send_nowait(
                    llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=text))
                )
