"""Redis-backed parts against a real Redis: rate limits, cache invalidation, Dramatiq worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from remotegpu.adapters.cache.user_cache import RedisBroadcastUserCache
from remotegpu.adapters.ratelimit.redis_limiter import RedisRateLimiter
from remotegpu.domain.identity.models import RefreshToken, User
from remotegpu.domain.shared.clock import utcnow
from tests.support.components import redis_url


@pytest.fixture
async def redis():
    client = Redis.from_url(redis_url())
    yield client
    await client.aclose()


async def test_rate_limit_counts_across_clients_and_answers_retry_after(redis):
    key = f"test:{uuid.uuid4()}"
    a, b = RedisRateLimiter(redis), RedisRateLimiter(Redis.from_url(redis_url()))
    assert [await a.hit(key, 3, 60) for _ in range(2)] == [0, 0]
    assert await b.hit(key, 3, 60) == 0  # another replica sees the same counter
    retry = await a.hit(key, 3, 60)
    assert 0 < retry <= 60
    await b.reset(key)
    assert await a.hit(key, 3, 60) == 0


async def test_invalidation_reaches_other_replicas(redis):
    now = utcnow()
    user = User(id=str(uuid.uuid4()), username="u", email="u@example.com", password_hash="x", created_at=now)
    replica_a, replica_b = RedisBroadcastUserCache(redis), RedisBroadcastUserCache(Redis.from_url(redis_url()))
    listener = asyncio.create_task(replica_b.listen())
    try:
        await asyncio.sleep(0.2)  # subscribed
        replica_b.put(user)
        assert replica_b.get(user.id) is not None
        await replica_a.invalidate(user.id)
        for _ in range(50):
            if replica_b.get(user.id) is None:
                break
            await asyncio.sleep(0.02)
        assert replica_b.get(user.id) is None
    finally:
        listener.cancel()


def test_worker_runs_housekeeping_from_the_queue(tmp_path):
    """`remotegpu worker` consumes a task enqueued by the server side and runs the use case."""
    url = redis_url()
    namespace = f"test-{uuid.uuid4().hex[:8]}"  # concurrent runs on one Redis never see each other's tasks
    db = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    env = {**os.environ, "REMOTEGPU_DATABASE_URL": db, "REMOTEGPU_REDIS_URL": url, "REMOTEGPU_DATA_DIR": str(tmp_path),
           "REMOTEGPU_SECRET_KEY": "k" * 40, "REMOTEGPU_REDIS_NAMESPACE": namespace, "REMOTEGPU_MAINTENANCE_INTERVAL_SECONDS": "3600", "REMOTEGPU_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "migrate"], env=env, check=True, capture_output=True)

    from remotegpu.entrypoints.config import load_settings
    from remotegpu.entrypoints.containers import build_container, close_container

    settings = load_settings(database_url=db, redis_url=url, redis_namespace=namespace, data_dir=tmp_path, secret_key="k" * 40, password_hash_profile="fast")

    async def seed() -> str:
        container = build_container(settings)
        user = await container.auth_service().register("worker", "w@example.com", "long enough")
        async with container.uow() as uow:
            await uow.refresh_tokens.add(RefreshToken(
                id=str(uuid.uuid4()), user_id=user.id, family_id="f", token_hash="h" * 64,
                created_at=utcnow() - timedelta(days=30), expires_at=utcnow() - timedelta(days=1),
            ))
            await uow.commit()
        await container.task_queue().enqueue("identity.purge_expired_refresh_tokens")
        await close_container(container)
        return user.id

    async def remaining() -> int:
        container = build_container(settings)
        async with container.uow() as uow:
            found = await uow.refresh_tokens.get_by_hash("h" * 64)
        await close_container(container)
        return 0 if found is None else 1

    asyncio.run(seed())
    # Its own process group: `remotegpu worker` starts Dramatiq's master, which starts
    # the worker processes; all of them must be gone when the test ends.
    worker = subprocess.Popen([sys.executable, "-m", "remotegpu.entrypoints.cli", "worker", "--threads", "1"], env=env,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(remaining()):
            assert time.monotonic() < deadline, "the worker did not purge the expired token"
            time.sleep(0.5)
        # SIGTERM, as a service manager stops it: every process of the worker ends.
        worker.terminate()
        worker.wait(timeout=60)
        assert _group_gone(worker.pid, wait_seconds=60), "`remotegpu worker` left Dramatiq processes running after SIGTERM"
    finally:
        _kill_group(worker)


def _group_gone(pgid: int, *, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _kill_group(process: subprocess.Popen) -> None:
    """Whatever happened above, nothing of the worker outlives the test."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    _group_gone(process.pid, wait_seconds=30)
