"""ChangeFeed over Redis pub/sub: changes made by any server or worker process reach
the subscribers of every process.

Publishing is a ``PUBLISH`` of the changes as JSON on one channel; each process runs
one ``listen()`` task that hands what arrives to its local subscribers. A process's
own changes come back through Redis too, so every subscriber sees one order. Redis
pub/sub forgets messages nobody was listening for — fine for a feed of hints (see
``application.shared.change_feed``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from typing import Sequence

from redis.asyncio import Redis

from remotegpu.adapters.events.local_feed import LocalChangeFeed, _Subscription
from remotegpu.application.shared.change_feed import EnvironmentChange

log = logging.getLogger(__name__)

CHANNEL = "remotegpu:environment-changes"


class RedisChangeFeed:
    def __init__(self, redis: Redis, channel: str = CHANNEL):
        self._redis = redis
        self._channel = channel
        self._local = LocalChangeFeed()
        self._listening = asyncio.Event()

    async def publish(self, changes: Sequence[EnvironmentChange]) -> None:
        await self._redis.publish(self._channel, json.dumps([asdict(c) for c in changes]))

    def subscribe(self) -> _Subscription:
        return self._local.subscribe()

    async def wait_listening(self, timeout: float = 5.0) -> None:
        """Until ``listen()`` is subscribed (tests: publish only after this)."""
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def listen(self) -> None:
        """Hand changes from Redis to this process's subscribers; runs for the process's life."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._listening.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._local.deliver(_decode(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect after Redis hiccups
                self._listening.clear()
                log.warning("change feed lost Redis; retrying", exc_info=True)
                await asyncio.sleep(1)


def _decode(data: bytes | str) -> list[EnvironmentChange]:
    try:
        return [EnvironmentChange(**item) for item in json.loads(data)]
    except (ValueError, TypeError):
        log.warning("ignoring a malformed message on the change feed")
        return []
