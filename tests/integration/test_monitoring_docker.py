"""A real Docker environment under a CPU burner: the agent's collector reads its
container's counters, and the history shows CPU near its limit (and memory, network
and disk series exist)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade
from remotegpu.adapters.monitoring.sql_store import SqlMetricsStore
from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.application.monitoring.collector import MetricsCollector
from remotegpu.application.monitoring.ports import SeriesFilter
from remotegpu.domain.monitoring import metrics as m
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import free_port

IMAGE = "remotegpu/base:latest"


@pytest.fixture
def runtime():
    docker = docker_with_image(IMAGE)
    scope = f"mon-{uuid.uuid4().hex[:8]}"
    yield DockerRuntime(docker, scope=scope, bind_address="127.0.0.1", stop_timeout=2)
    remove_scope(docker, scope)


async def test_cpu_burner_shows_cpu_near_its_limit_in_history(runtime, tmp_path):
    env_id = f"mon-{uuid.uuid4().hex[:10]}"
    await runtime.ensure_running(RuntimeSpec(
        env_id=env_id, image=IMAGE, cpu_cores=0.5, memory_gib=0.5, ports={22: free_port()},
        env={"REMOTEGPU_JUPYTER_ENABLED": "0"}, labels={"remotegpu.generation": "0"}))
    code, out = await runtime.exec(env_id, ["sh", "-c", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"])
    assert code == 0, out
    collector = MetricsCollector(None, runtime, interval_seconds=1)
    for _ in range(5):
        await collector.collect_once()
        await asyncio.sleep(1.5)
    rows = collector.drain()
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    store = SqlMetricsStore(async_sessionmaker(engine, expire_on_commit=False))
    try:
        await store.write([m.Sample(ts, name, m.quantize(v), "host-1", env, "ws-1", gpu) for ts, name, v, env, gpu in rows])
        now = time.time()
        [series] = await store.history(SeriesFilter(env_id=env_id), m.CPU_PERCENT, now - 60, now + 1, 60, now=now)
        point = series.points[-1]
        assert point.count == 4  # rates from the 2nd reading on
        assert 75 <= point.avg <= 110, point  # a 0.5-core limit, burnt in full
        assert point.min >= 50
        cores = await store.history(SeriesFilter(env_id=env_id), m.CPU_CORES, now - 60, now + 1, 60, now=now)
        assert 0.35 <= cores[0].points[-1].avg <= 0.55
        latest = {s.metric: s for s in await store.latest(SeriesFilter(env_id=env_id), since=now - 60)}
        assert {m.MEM_USED, m.MEM_LIMIT, m.NET_RX, m.NET_TX, m.DISK_READ, m.DISK_WRITE} <= set(latest)
        assert latest[m.MEM_LIMIT].value == 512.0
    finally:
        await engine.dispose()
        await runtime.remove(env_id)
