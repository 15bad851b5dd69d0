"""ChangeTrackingUnitOfWork publishes what a use case changed — after commit, only
real changes, flagged for the agent when placement or desired state moved — and the
local feed drops (and says so) rather than blocking on a slow subscriber."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from remotegpu.adapters.events.local_feed import LocalChangeFeed
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.application.shared.change_feed import ChangeTrackingUnitOfWork, EnvironmentChange, FeedOverflow
from remotegpu.domain.environments.models import Desired, Environment, EnvStatus

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def environment(env_id: str = "e1") -> Environment:
    return Environment(id=env_id, name="n", workspace_id="ws", owner_id="u", image="img", gpu_count=1, gpu_model=None,
                       cpu_cores=1, memory_gib=1, created_at=NOW, updated_at=NOW)


@pytest.fixture
def feed():
    return LocalChangeFeed()


@pytest.fixture
def uow(feed):
    store = InMemoryStore()
    return lambda: ChangeTrackingUnitOfWork(InMemoryUnitOfWork(store), feed)


def drain(subscription) -> list[EnvironmentChange]:
    out = []
    while not subscription._queue.empty():
        out.append(subscription._queue.get_nowait())
    return out


async def test_publishes_after_commit_and_never_a_rolled_back_change(uow, feed):
    sub = feed.subscribe()
    async with uow() as u:
        await u.environments.add(environment())
        assert drain(sub) == []  # not before the commit
        await u.commit()
    (added,) = drain(sub)
    assert (added.env_id, added.status, added.for_agent) == ("e1", "queued", False)  # not placed: no agent
    async with uow() as u:
        env = await u.environments.get("e1")
        env.transition(EnvStatus.STOPPED, "x", NOW)
        await u.environments.update(env)
    assert drain(sub) == []  # left without commit: rolled back, nothing announced


async def test_unchanged_saves_are_not_announced_and_agent_flag_follows_placement(uow, feed):
    async with uow() as u:
        await u.environments.add(environment())
        await u.commit()
    sub = feed.subscribe()
    async with uow() as u:
        env = await u.environments.get("e1")
        await u.environments.update(env)  # as a heartbeat does for every environment
        await u.commit()
    assert drain(sub) == []
    async with uow() as u:
        (env,) = await u.environments.list_by_status([EnvStatus.QUEUED])
        env.host_id = "h1"
        env.transition(EnvStatus.STARTING, "placed", NOW)
        await u.environments.update(env)
        await u.commit()
    (placed,) = drain(sub)
    assert (placed.host_id, placed.status, placed.for_agent) == ("h1", "starting", True)
    async with uow() as u:
        env = await u.environments.get("e1")
        env.transition(EnvStatus.RUNNING, "seen running", NOW)  # observed, nothing for the agent to do
        await u.environments.update(env)
        await u.commit()
    (running,) = drain(sub)
    assert (running.status, running.for_agent) == ("running", False)
    async with uow() as u:
        env = await u.environments.get("e1")
        env.desired = Desired.STOPPED
        env.transition(EnvStatus.STOPPING, "stop", NOW)
        await u.environments.update(env)
        await u.commit()
    assert [c.for_agent for c in drain(sub)] == [True]


async def test_a_slow_subscriber_is_told_it_missed_changes_and_never_blocks_the_publisher():
    feed = LocalChangeFeed(queue_size=2)
    slow = feed.subscribe()
    changes = [EnvironmentChange(f"e{i}", "ws", None, "queued", "running", 0, False) for i in range(5)]
    await asyncio.wait_for(feed.publish(changes), 1)
    assert [(await slow.get()).env_id for _ in range(2)] == ["e0", "e1"]
    with pytest.raises(FeedOverflow):
        await slow.get()
    slow.close()
    assert feed.subscriber_count == 0
