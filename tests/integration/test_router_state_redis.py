"""The inference router's shared state on a real Redis: two processes' views (two
clients, two states) see each other's requests in flight and held requests, arrivals
are counted once, exactly one of them leads, the lease passes on when the leader stops,
and a poke wakes the other process only."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from remotegpu.adapters.workloads.router_state import LocalRouterState, RedisRouterState
from tests.support.components import redis_url


@pytest.fixture
async def pair():
    prefix = f"test-{uuid.uuid4().hex[:8]}:serve"
    clients = [Redis.from_url(redis_url()), Redis.from_url(redis_url())]
    a, b = RedisRouterState(clients[0], prefix), RedisRouterState(clients[1], prefix)
    woken = {"a": asyncio.Event(), "b": asyncio.Event()}
    await a.start(woken["a"].set)
    await b.start(woken["b"].set)
    yield a, b, woken
    await a.stop()
    await b.stop()
    leftover = [k async for k in clients[0].scan_iter(match=f"{prefix}:*")]
    if leftover:
        await clients[0].delete(*leftover)
    for c in clients:
        await c.aclose()


async def test_counts_of_one_process_are_seen_by_the_other(pair):
    a, b, _ = pair
    await a.publish({"r1": 3, "r2": 0}, {"svc": 2}, {"svc": 5})
    await b.publish({"r1": 1}, {}, {"svc": 1})
    await a.publish({"r1": 3}, {"svc": 2}, {})
    assert b.remote_in_flight("r1") == 3 and b.remote_in_flight("r2") == 0
    assert a.remote_in_flight("r1") == 1  # its own counts are not counted twice
    assert b.remote_waiting("svc") == 2 and a.remote_waiting("svc") == 0
    assert a.peers() == 1 and b.peers() == 1
    # arrivals of both, taken once
    assert await a.take_arrivals() == {"svc": 6}
    assert await b.take_arrivals() == {}
    # a process that publishes nothing in flight any more is at zero for the other
    await a.publish({"r1": 0}, {}, {})
    await b.publish({}, {}, {})
    assert b.remote_in_flight("r1") == 0 and b.remote_waiting("svc") == 0


async def test_exactly_one_leads_and_the_lease_passes_on_stop(pair):
    a, b, _ = pair
    first = [await a.leader(), await b.leader()]
    assert sorted(first) == [False, True]
    again = [await a.leader(), await b.leader()]
    assert again == first  # the holder renews, the other stays follower
    leader, follower = (a, b) if first[0] else (b, a)
    await leader.stop()
    assert await follower.leader()


async def test_a_poke_wakes_the_other_process_not_itself(pair):
    a, b, woken = pair
    await a.poke()
    await asyncio.wait_for(woken["b"].wait(), 5)
    await asyncio.sleep(0.2)
    assert not woken["a"].is_set()


async def test_without_redis_the_process_is_alone_and_leads():
    state = LocalRouterState()
    await state.start(lambda: None)
    await state.publish({"r1": 2}, {"s": 1}, {"s": 1})
    assert await state.leader() and state.remote_in_flight("r1") == 0 and await state.take_arrivals() == {}
    assert not state.shared
