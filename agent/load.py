"""The load a worker reports to LiveKit: the calls whose entrypoint runs in this process.

The framework adds to the reported load a share for every job it has said "available" to but not
yet launched. Counting ``active_jobs`` as well counted a job that was still launching twice, so a
worker sized for N calls refused the N-th whenever the one before it was still starting
(``python -m bench.calls 4``: the fourth caller never got an agent, "no servers available").
A call counts from the first line of its entrypoint until its job shuts down.
"""

from __future__ import annotations

import threading

from livekit.agents import JobContext


class CallLoad:
    """``load_fnc`` for an ``AgentServer`` whose jobs are threads of one process."""

    def __init__(self, max_calls: int = 1) -> None:
        self.max_calls = max(1, max_calls)
        self._calls = 0
        self._lock = threading.Lock()

    def sized(self, max_calls: int) -> CallLoad:
        """This counter for a worker that holds ``max_calls`` calls at once."""
        self.max_calls = max(1, max_calls)
        return self

    @property
    def calls(self) -> int:
        return self._calls

    def enter(self, ctx: JobContext) -> None:
        """Count this call until its job shuts down (call first thing in the entrypoint)."""
        with self._lock:
            self._calls += 1

        async def _leave(_reason: str = "") -> None:
            with self._lock:
                self._calls -= 1

        ctx.add_shutdown_callback(_leave)

    def __call__(self, _server: object = None) -> float:
        return min(1.0, self._calls / self.max_calls)
