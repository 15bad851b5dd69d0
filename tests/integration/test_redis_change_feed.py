"""RedisChangeFeed against a real Redis: a change published by one process reaches
the subscribers of another (here: two feeds on two connections), in order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from remotegpu.adapters.events.redis_feed import RedisChangeFeed
from remotegpu.application.shared.change_feed import EnvironmentChange
from tests.support.components import redis_url


def change(env_id: str, status: str) -> EnvironmentChange:
    return EnvironmentChange(env_id=env_id, workspace_id="ws", host_id="h1", status=status, desired="running",
                             generation=1, for_agent=True)


@pytest.fixture
async def feeds():
    channel = f"test:{uuid.uuid4()}:changes"
    clients = [Redis.from_url(redis_url()), Redis.from_url(redis_url())]
    feeds = [RedisChangeFeed(c, channel=channel) for c in clients]
    listeners = [asyncio.create_task(f.listen()) for f in feeds]
    for f in feeds:
        await f.wait_listening()
    yield feeds
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    for c in clients:
        await c.aclose()


async def test_changes_published_by_one_process_reach_subscribers_of_another(feeds):
    server, worker = feeds
    watching = server.subscribe()
    own = worker.subscribe()
    await worker.publish([change("e1", "starting"), change("e1", "running")])
    assert [await asyncio.wait_for(watching.get(), 5) for _ in range(2)] == [change("e1", "starting"), change("e1", "running")]
    # The publisher's own subscribers hear it through Redis too: one order for all.
    assert (await asyncio.wait_for(own.get(), 5)).status == "starting"
    watching.close()
    await worker.publish([change("e2", "queued")])
    assert (await asyncio.wait_for(own.get(), 5)).status == "running"
    assert (await asyncio.wait_for(own.get(), 5)).env_id == "e2"
