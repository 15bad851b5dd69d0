from __future__ import annotations

import math
import time


class InMemoryRateLimiter:
    """Fixed-window counters in one process (embedded mode)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, key: str, limit: int, window_seconds: int) -> int:
        now = self._clock()
        started, count = self._windows.get(key, (now, 0))
        if now - started >= window_seconds:
            started, count = now, 0
        count += 1
        self._windows[key] = (started, count)
        if len(self._windows) > 100_000:  # bound memory under a flood of distinct keys
            self._evict(now, window_seconds)
        if count > limit:
            return max(1, math.ceil(started + window_seconds - now))
        return 0

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _evict(self, now: float, window_seconds: int) -> None:
        for k in [k for k, (s, _) in self._windows.items() if now - s >= window_seconds]:
            del self._windows[k]
