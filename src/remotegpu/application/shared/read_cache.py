"""Answers of hot reads kept for as long as they are the truth, and not a moment longer.

The database keeps one counter, the change epoch, that every committed change to what
these reads show moves, in the same transaction as the change (migration 0023's
triggers; the memory store moves it on every commit). A read first asks for the
committed epoch (one tiny query), then either finds an answer computed at that epoch
or computes it and keeps it. Everything it keeps was read after the epoch it is kept
under, so it is never older than the database at that epoch: a request gets exactly
what it would have read itself. Authorization is never cached: callers check the
caller's membership on every request, then take the shared answer.

The cache holds one epoch at a time (a change empties it) and at most ``max_entries``
answers. Values are shared between requests: callers must not mutate them. Requests
that miss the same answer at the same epoch at once wait for one computation instead
of each running it (a busy console after a change would otherwise rebuild it 50 times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class HotReads(Protocol):
    """The one statement of a cached hot read, without a unit of work (adapters/db/hot_reads.py).

    Both read the committed state at the moment they run, as a unit of work's first
    statement would; they only cost less."""

    async def membership(self, workspace_id: str, user_id: str) -> tuple[int, bool, str | None]:
        """(change epoch, whether the workspace exists, the user's role in it or None), in one statement."""
        ...

    async def epoch(self) -> int:
        """The committed change epoch."""
        ...

    async def close(self) -> None: ...


class Memo:
    """Values derived from a shared cached answer (e.g. its views for one kind of caller,
    or its bytes), kept while that answer is: keyed by the answer's identity, which the
    entry holds so that it cannot be reused meanwhile; bounded."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[object, Any]] = {}

    def get(self, source: object, key: Hashable, make: Callable[[], T]) -> T:
        full = (id(source), key)
        entry = self._entries.get(full)
        if entry is not None and entry[0] is source:
            return entry[1]
        value = make()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[full] = (source, value)
        return value


class EpochCache:
    def __init__(self, max_entries: int = 2048):
        self.max_entries = max_entries
        self._epoch: int | None = None
        self._entries: dict[Hashable, Any] = {}
        self._running: dict[tuple[int, Hashable], asyncio.Future] = {}
        self.hits = 0
        self.misses = 0

    async def get_or_compute(self, epoch: int | None, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The answer for ``key`` at ``epoch``; ``compute`` (which must read the database
        after ``epoch`` was read) when there is none. ``None``: no epoch, nothing cached."""
        if epoch is not None and epoch == self._epoch:
            try:
                value = self._entries[key]
            except KeyError:
                pass
            else:
                self.hits += 1
                return value
        self.misses += 1
        if epoch is None:
            return await compute()
        running = self._running.get((epoch, key))
        if running is not None:
            try:
                return await asyncio.shield(running)
            except Exception:  # noqa: BLE001 - the other request's failure is its own: compute here
                return await compute()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._running[(epoch, key)] = future
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("computation cancelled"))
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            self._running.pop((epoch, key), None)
        future.set_result(value)
        self._put(epoch, key, value)
        return value

    def _put(self, epoch: int | None, key: Hashable, value: Any) -> None:
        if epoch is None:
            return
        if epoch != self._epoch:
            if self._epoch is not None and epoch < self._epoch:
                return  # computed by a request that read an older epoch: newer answers are kept
            self._epoch, self._entries = epoch, {}
        elif len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[key] = value
