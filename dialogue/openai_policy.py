"""OpenAI-compatible LLM: any server speaking the chat-completions API (OpenAI, vLLM, Ollama, llama.cpp).

:class:`OpenAIPolicy` streams text and tool calls. On its own it is a bare
policy; :class:`dialogue.grounded.GroundedPolicy` wraps it with the persona,
retrieval, guardrails and the retry/apology on failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from .policy import Policy, PolicyError
from .types import Message, ReplyEvent, TextDelta, ToolCall, ToolSpec

logger = logging.getLogger("dialogue.openai")


class OpenAIPolicy(Policy):
    """Streams chat completions; tool calls are passed back to the agent to run.

    Every failure (server down, timeout, HTTP error, malformed stream or tool
    arguments) surfaces as one :class:`PolicyError`.
    """

    name = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str = "none", system_prompt: str = "",
                 timeout: float = 20.0, temperature: float | None = 0.2, max_tokens: int | None = 200) -> None:
        import openai  # imported here: the offline policy must not need it

        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0)
        self.model = model
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens

    async def respond(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> AsyncIterator[ReplyEvent]:
        payload: list[dict] = []
        if self.system_prompt:
            payload.append({"role": "system", "content": self.system_prompt})
        for m in messages:
            if m.role == "tool":
                # Tool results travel as plain context: not every compatible server keeps call ids.
                payload.append({"role": "user", "content": f"[tool {m.name} result] {m.content}"})
            else:
                payload.append({"role": m.role, "content": m.content})
        async for ev in self.stream(payload, tools):
            yield ev

    async def stream(self, payload: list[dict], tools: list[ToolSpec] | None = None,
                     tool_choice: str | dict | None = None) -> AsyncIterator[ReplyEvent]:
        """Stream one completion for an OpenAI-format message list (``tool_choice`` as in the OpenAI API)."""
        kwargs: dict = {}
        if tools:
            kwargs["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in tools
            ]
            if tool_choice is not None:
                kwargs["tool_choice"] = tool_choice
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens:
            kwargs["max_tokens"] = self.max_tokens
        try:
            stream = await self._client.chat.completions.create(model=self.model, messages=payload, stream=True, **kwargs)
            calls: dict[int, dict] = {}
            received = 0
            async for chunk in stream:
                received += 1
                if not getattr(chunk, "choices", None):
                    continue
                delta = chunk.choices[0].delta
                if delta is None:
                    raise PolicyError("malformed stream chunk from the LLM (no delta)")
                if delta.content:
                    yield TextDelta(delta.content)
                for tc in delta.tool_calls or []:
                    slot = calls.setdefault(tc.index or 0, {"id": tc.id, "name": "", "args": ""})
                    name = tc.function.name if tc.function else None
                    # OpenAI sends the name once; llama.cpp repeats it in every chunk.
                    if name and name != slot["name"]:
                        slot["name"] += name
                    if tc.function and tc.function.arguments:
                        slot["args"] += tc.function.arguments
            if received == 0:
                raise PolicyError("the reply held no completion chunks (is this an OpenAI-compatible server?)")
            for slot in calls.values():
                try:
                    args = json.loads(slot["args"] or "{}", strict=False)  # raw newlines in strings: lenient
                except json.JSONDecodeError as e:
                    raise PolicyError(f"malformed tool arguments from the LLM for {slot['name']}") from e
                if not slot["name"] or not isinstance(args, dict):
                    raise PolicyError("malformed tool call from the LLM")
                yield ToolCall(name=slot["name"], arguments=args, call_id=slot["id"] or ToolCall("", {}).call_id)
        except PolicyError:
            raise
        except Exception as e:  # network down, timeout, bad reply: one clear error upward
            raise PolicyError(f"LLM request to {self._client.base_url} failed: {type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        await self._client.close()
