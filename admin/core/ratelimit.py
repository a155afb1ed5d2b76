"""Fixed-window rate limits for login and token endpoints.

In memory per process by default; with ``ADMIN_RATE_LIMIT_REDIS_URL`` the
counters live in Redis so that several API processes share them.
"""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException, status


def parse_rate(rate: str) -> tuple[int, int]:
    """``"10/60"`` -> (10 requests, 60 seconds)."""
    count, _, seconds = rate.partition("/")
    return int(count), int(seconds or 60)


class RateLimiter:
    """Counts hits per key in fixed windows and raises 429 when a key is over its limit."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)

    def check(self, key: str, rate: str) -> None:
        """Raise HTTP 429 with Retry-After when ``key`` already used up ``rate``; records nothing
        (the login throttle checks before a password is tried and counts only failures)."""
        limit, period = parse_rate(rate)
        now = int(time.time())
        window = now // period
        if self._redis is not None:
            count = int(self._redis.get(f"dh:rl:{key}:{window}") or 0)
        else:
            with self._lock:
                w, c = self._windows.get(key, (window, 0))
                count = c if w == window else 0
        if count >= limit:
            self._refuse(window, period, now)

    @staticmethod
    def _refuse(window: int, period: int, now: int) -> None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "Too many attempts; wait a minute and try again.",
            headers={"Retry-After": str((window + 1) * period - now)},
        )

    def hit(self, key: str, rate: str) -> None:
        """Record one hit for ``key``; raise HTTP 429 with Retry-After when over ``rate``."""
        limit, period = parse_rate(rate)
        now = int(time.time())
        window = now // period
        if self._redis is not None:
            rkey = f"dh:rl:{key}:{window}"
            pipe = self._redis.pipeline()
            pipe.incr(rkey)
            pipe.expire(rkey, period + 1)
            count = int(pipe.execute()[0])
        else:
            with self._lock:
                w, c = self._windows.get(key, (window, 0))
                count = c + 1 if w == window else 1
                self._windows[key] = (window, count)
                if len(self._windows) > 100_000:  # bound memory under a flood of distinct keys
                    self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        if count > limit:
            self._refuse(window, period, now)

    def reset(self) -> None:
        """Forget all counters (tests)."""
        with self._lock:
            self._windows.clear()
