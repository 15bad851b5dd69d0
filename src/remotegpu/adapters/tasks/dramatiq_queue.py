from __future__ import annotations

import asyncio
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUE_NAME = "remotegpu"


def make_broker(redis_url: str, namespace: str = "remotegpu") -> RedisBroker:
    """``namespace`` prefixes every Redis key, so platforms (or test runs) can share one Redis."""
    from dramatiq.middleware import AsyncIO

    broker = RedisBroker(url=redis_url, namespace=f"{namespace}:dramatiq")
    broker.add_middleware(AsyncIO())
    return broker


class DramatiqTaskQueue:
    """Production mode: hand the task to Dramatiq workers through Redis.

    The server only needs the actor's name: it never imports the worker's actors.
    """

    def __init__(self, broker: dramatiq.Broker):
        self._broker = broker

    async def enqueue(self, task: str, **kwargs: Any) -> None:
        message = dramatiq.Message(queue_name=QUEUE_NAME, actor_name=task, args=(), kwargs=kwargs, options={})
        await asyncio.to_thread(self._broker.enqueue, message)
