"""The load a worker reports counts each call once, from its entrypoint to its job's end (agent/load.py)."""

from __future__ import annotations

import asyncio

from agent.load import CallLoad


class _Ctx:
    """What CallLoad uses of a JobContext: the job's shutdown callbacks, run when the job ends."""

    def __init__(self) -> None:
        self.callbacks = []

    def add_shutdown_callback(self, fn) -> None:
        self.callbacks.append(fn)

    async def shut_down(self) -> None:
        for fn in self.callbacks:
            await fn("room deleted")


async def test_a_worker_for_four_calls_is_full_at_four_and_free_again_when_one_ends():
    load = CallLoad().sized(4)
    calls = [_Ctx() for _ in range(4)]
    for i, ctx in enumerate(calls[:3]):
        load.enter(ctx)
        assert load() == (i + 1) / 4
    load.enter(calls[3])
    assert load() == 1.0 and load.calls == 4
    await calls[1].shut_down()
    assert load() == 0.75 and load.calls == 3
    await asyncio.gather(*(c.shut_down() for c in (calls[0], calls[2], calls[3])))
    assert load() == 0.0
