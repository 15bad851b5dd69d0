"""The process-wide scheduling lock used where the database has no advisory locks
(the in-memory adapter and SQLite).

One ``asyncio.Lock`` per event loop, created lazily: an asyncio lock belongs to the
loop it is first used on, and tests (and ``asyncio.run`` at start-up) create many
loops. Within one loop — the server's — every unit of work shares the same lock.
"""

from __future__ import annotations

import asyncio
import weakref

_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


class SchedulingLockHolder:
    """What one unit of work holds: acquired at most once, released idempotently."""

    def __init__(self) -> None:
        self._held: asyncio.Lock | None = None

    async def acquire(self) -> None:
        if self._held is not None:
            return  # re-entrant within one unit of work, like pg_advisory_xact_lock
        lock = _lock()
        await lock.acquire()
        self._held = lock

    def release(self) -> None:
        lock, self._held = self._held, None
        if lock is not None:
            lock.release()
