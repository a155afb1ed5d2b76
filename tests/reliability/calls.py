"""Steps the fault tests share: a call that has started and answered once, and its finished record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.caller import ScriptedCaller


async def first_answer(caller: ScriptedCaller, say: Callable[[str], np.ndarray]) -> None:
    """Join, see the face, hear the greeting, and have "What are your opening hours?" answered (then quiet)."""
    await caller.join()
    assert await caller.wait_video(timeout=60)
    await caller.wait_greeting()
    await caller.wait_quiet(quiet_for=1.5)
    t = time.time()
    await caller.ask("What are your opening hours?", say("What are your opening hours?"), wait_answer_end=False)
    assert "monday" in await caller.wait_said(t, ("monday",))
    await caller.wait_quiet(quiet_for=1.2)


async def session_record(values: dict[str, str], session_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The admin's record of the session, once it has an outcome (or as it is after ``timeout``)."""
    import httpx

    viewer = {"X-API-Key": values["DH_ADMIN_VIEWER_KEY"]}
    deadline = time.time() + timeout
    while True:
        rec = httpx.get(f"{values['DH_ADMIN_URL']}/api/v1/sessions/{session_id}", headers=viewer, timeout=30).json()
        if rec.get("outcome") or time.time() > deadline:
            return rec
        await asyncio.sleep(0.5)
