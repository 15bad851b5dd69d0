"""Two server replicas on one PostgreSQL and one Redis (the production shape).

A password change made through replica A voids the old access tokens on replica B,
which had the user in its cache: the change invalidates the cache on every replica
through Redis. B's cache here keeps users for an hour, so only the invalidation (not
the cache's short TTL) can make B notice. Failed logins through both replicas count
against one limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from remotegpu.adapters.cache.user_cache import RedisBroadcastUserCache
from remotegpu.adapters.db.migrate import upgrade_async
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.components import postgres_url, redis_url
from tests.support.postgres import reset_schema

PASSWORD = "correct horse battery"


@pytest.fixture
def database():
    url = postgres_url()
    reset_schema(url)
    return url


@pytest.fixture
async def replicas(aiohttp_client, tmp_path, database):
    await upgrade_async(database)
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    clients = []
    for name in ("a", "b"):
        settings = make_settings(
            tmp_path / name, database_url=database, redis_url=redis_url(), redis_namespace=namespace,
            login_limit_per_account=5, login_limit_per_ip=10_000,
        )
        container = build_container(settings)
        if name == "b":
            container.user_cache.override(
                RedisBroadcastUserCache(container.redis(), ttl_seconds=3600, channel=f"{namespace}:user-invalidations")
            )
        clients.append(await aiohttp_client(create_app(container, run_background=False)))
    await asyncio.sleep(0.5)  # the cache listeners subscribe
    yield clients
    redis = Redis.from_url(redis_url())
    try:
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def status_within(client, token: str, wanted: int, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while True:
        status = (await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})).status
        if status == wanted or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def test_a_password_change_on_one_replica_voids_tokens_on_the_other(replicas):
    a, b = replicas
    acct = await signup(a, "replicated")
    assert await status_within(b, acct.token, 200) == 200  # B caches the user (epoch 0)
    r = await a.post(
        "/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=acct.headers,
    )
    assert r.status == 204
    assert await status_within(b, acct.token, 401) == 401
    # B still answers for a fresh login (its cache takes the new epoch).
    r = await b.post("/api/v1/auth/login", json={"username": "replicated", "password": "a brand new passphrase"})
    assert r.status == 200
    assert await status_within(b, (await r.json())["access_token"], 200) == 200


async def test_failed_logins_through_both_replicas_count_together(replicas):
    a, b = replicas
    await signup(a, "shared")
    statuses = []
    for client in (a, b) * 3:
        r = await client.post("/api/v1/auth/login", json={"username": "shared", "password": "wrong-guess"})
        statuses.append(r.status)
    assert statuses == [401] * 5 + [429]
