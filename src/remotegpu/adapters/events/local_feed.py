"""In-process ChangeFeed: every subscriber has its own bounded queue.

A subscriber that stops reading must not hold the publisher (an API request) up or
grow memory without bound: when its queue is full the change is dropped and the
subscriber is told once (``FeedOverflow``) so it re-reads instead.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from remotegpu.application.shared.change_feed import EnvironmentChange, FeedOverflow

DEFAULT_QUEUE_SIZE = 1000


class _Subscription:
    def __init__(self, feed: "LocalChangeFeed", size: int):
        self._feed = feed
        self._queue: asyncio.Queue[EnvironmentChange] = asyncio.Queue(maxsize=size)
        self._overflowed = False

    def offer(self, change: EnvironmentChange) -> None:
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self._overflowed = True

    async def get(self) -> EnvironmentChange:
        if self._overflowed and self._queue.empty():
            self._overflowed = False
            raise FeedOverflow("changes were dropped while this subscriber fell behind")
        return await self._queue.get()

    def close(self) -> None:
        self._feed._subscribers.discard(self)

    def __enter__(self) -> "_Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalChangeFeed:
    """Satisfies ``ChangeFeed`` within one process (embedded mode, tests)."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE):
        self._queue_size = queue_size
        self._subscribers: set[_Subscription] = set()

    async def publish(self, changes: Sequence[EnvironmentChange]) -> None:
        self.deliver(changes)

    def deliver(self, changes: Sequence[EnvironmentChange]) -> None:
        for subscription in list(self._subscribers):
            for change in changes:
                subscription.offer(change)

    def subscribe(self) -> _Subscription:
        subscription = _Subscription(self, self._queue_size)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
