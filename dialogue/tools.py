"""Tools the policy may call: the three core tools and a registry for a deployment's own.

A deployment adds tools (order status, appointment booking) in its own module,
without touching the core::

    registry = ToolRegistry()

    @registry.tool(description="Look up an order", parameters={...},
                   triggers={"en": ["order"], "zh": ["订单"]}, extract=lambda text: {...})
    async def order_status(order_id: str) -> str: ...

and points ``DIALOGUE_TOOLS`` at ``"mypackage.tools:registry"``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .types import ToolSpec

TRANSFER_TO_HUMAN = ToolSpec(
    name="transfer_to_human",
    description="Hand the call to a human colleague. Use when the caller asks for a person, is upset, "
    "reports fraud or a complaint, or when you cannot help.",
    parameters={
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the call is escalated, in a few words."},
            "summary": {"type": "string", "description": "Short summary of the conversation for the colleague."},
        },
        "required": ["reason"],
    },
)
CREATE_TICKET = ToolSpec(
    name="create_ticket",
    description="Create a follow-up ticket when the caller wants to be called back or a request needs later work.",
    parameters={
        "type": "object",
        "properties": {
            "subject": {"type": "string", "description": "One-line subject."},
            "details": {"type": "string", "description": "What the colleague needs to know."},
        },
        "required": ["subject"],
    },
)
END_CALL = ToolSpec(
    name="end_call",
    description="End the call after saying goodbye, when the caller says they are done.",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}, "required": []},
)
CORE_TOOLS = (TRANSFER_TO_HUMAN, CREATE_TICKET, END_CALL)
CORE_TOOL_NAMES = frozenset(t.name for t in CORE_TOOLS)


@dataclass
class DeploymentTool:
    """A deployment's own tool: its schema, the function that runs it, and offline hints.

    ``triggers`` (keywords per language) and ``extract`` (utterance -> arguments,
    or None when they are missing) let the offline policy call the tool with no
    LLM; ``say`` turns the result into a spoken sentence for the offline policy
    (default: the result as text). An LLM uses the schema instead.
    """

    spec: ToolSpec
    handler: Callable[..., Any]
    triggers: dict[str, list[str]] = field(default_factory=dict)
    extract: Callable[[str], dict[str, Any] | None] | None = None
    say: Callable[[Any, str], str] | None = None
    missing_args: dict[str, str] = field(default_factory=dict)  # language -> what to ask for

    @property
    def name(self) -> str:
        return self.spec.name

    async def run(self, **arguments: Any) -> Any:
        """Run the handler (sync handlers too)."""
        result = self.handler(**arguments)
        if inspect.isawaitable(result):
            result = await result
        return result

    def matches(self, text: str) -> bool:
        """Whether the offline policy should use this tool for ``text``."""
        low = text.lower()
        for kws in self.triggers.values():
            for kw in kws:
                k = kw.lower()
                if re.search(r"[\u4e00-\u9fff]", k):
                    if k in low:
                        return True
                elif re.search(r"(?<![a-z])" + re.escape(k) + r"(?![a-z])", low):
                    return True
        return False


class ToolRegistry:
    """The deployment's tools by name."""

    def __init__(self, tools: list[DeploymentTool] | None = None) -> None:
        self._tools: dict[str, DeploymentTool] = {}
        for t in tools or []:
            self.add(t)

    def add(self, tool: DeploymentTool) -> DeploymentTool:
        """Register a tool; core tool names are reserved."""
        if tool.name in CORE_TOOL_NAMES:
            raise ValueError(f"{tool.name!r} is a core tool name; choose another name")
        self._tools[tool.name] = tool
        return tool

    def tool(self, *, name: str | None = None, description: str = "", parameters: dict | None = None,
             triggers: dict[str, list[str]] | None = None, extract: Callable[[str], dict | None] | None = None,
             say: Callable[[Any, str], str] | None = None, missing_args: dict[str, str] | None = None
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            spec = ToolSpec(name or fn.__name__, description or (fn.__doc__ or "").strip(),
                            parameters or {"type": "object", "properties": {}})
            self.add(DeploymentTool(spec, fn, triggers or {}, extract, say, missing_args or {}))
            return fn

        return deco

    def get(self, name: str) -> DeploymentTool | None:
        return self._tools.get(name)

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def __iter__(self):
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def match(self, text: str) -> DeploymentTool | None:
        """The first tool whose triggers occur in ``text``."""
        return next((t for t in self._tools.values() if t.matches(text)), None)


def load_registry(ref: str | None) -> ToolRegistry:
    """The registry named ``"package.module:attribute"`` (empty registry when ``ref`` is empty)."""
    if not ref:
        return ToolRegistry()
    module_name, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr or "registry")
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load deployment tools {ref!r}: {e} (DIALOGUE_TOOLS is 'package.module:registry')") from e
    if callable(obj) and not isinstance(obj, ToolRegistry):
        obj = obj()
    if not isinstance(obj, ToolRegistry):
        raise ValueError(f"{ref!r} is not a dialogue.tools.ToolRegistry")
    return obj
