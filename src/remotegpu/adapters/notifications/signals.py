"""In-process UnreadSignals: wakes the event streams of one user in this process.

Notifications are written by the process that committed the event (API requests,
the embedded agent, the sweepers); a stream held by another server process hears
of it at its next periodic check instead (events.py re-reads the count then).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class _Subscription:
    def __init__(self, owner: "LocalUnreadSignals", user_id: str):
        self._owner, self._user_id = owner, user_id
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()

    def close(self) -> None:
        self._owner._subs[self._user_id].discard(self)


class LocalUnreadSignals:
    def __init__(self) -> None:
        self._subs: dict[str, set[_Subscription]] = defaultdict(set)

    def notify(self, user_id: str) -> None:
        for sub in list(self._subs.get(user_id, ())):
            sub.set()

    def subscribe(self, user_id: str) -> _Subscription:
        sub = _Subscription(self, user_id)
        self._subs[user_id].add(sub)
        return sub
