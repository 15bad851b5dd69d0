"""MetricsStore and AlertStore contracts: memory, SQLite and PostgreSQL (COPY, FOR UPDATE) alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from remotegpu.adapters.monitoring.memory_alerts import InMemoryAlertStore
from remotegpu.adapters.monitoring.memory_store import InMemoryMetricsStore
from remotegpu.adapters.monitoring.sql_alerts import SqlAlertStore
from remotegpu.adapters.monitoring.sql_store import SqlMetricsStore
from remotegpu.application.monitoring.alert_ports import AlertRecord
from remotegpu.application.monitoring.ports import SeriesFilter
from remotegpu.domain.monitoring import metrics as m
from remotegpu.domain.monitoring.alerts import AlertRule, AlertState, AlertStatus, RuleType, Scope
from tests.contract.conftest import sql_sessions

T0 = 1_790_000_000 - 1_790_000_000 % 3600


@pytest.fixture
async def stores(repo_backend, tmp_path):
    name, pg = repo_backend
    if name == "memory":
        yield name, InMemoryMetricsStore(), InMemoryAlertStore()
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        yield name, SqlMetricsStore(sessions), SqlAlertStore(sessions)


def _samples() -> list[m.Sample]:
    out = []
    for i in range(180):  # 3 minutes at 1 s, two GPUs of two environments on one host
        out.append(m.Sample(T0 + i, m.GPU_UTIL, float(i % 100), "h1", "e1", "w1", "GPU-a"))
        out.append(m.Sample(T0 + i, m.GPU_UTIL, 50.0, "h1", "e2", "w2", "GPU-b"))
    return out


async def test_latest_and_history_by_scope(stores):
    _, store, _ = stores
    await store.write(_samples())
    latest = await store.latest(SeriesFilter(workspace_id="w1"), since=T0)
    assert [(s.env_id, s.value, s.ts) for s in latest] == [("e1", 79.0, T0 + 179)]
    assert len(await store.latest(SeriesFilter(host_id="h1"), since=T0)) == 2
    assert await store.latest(SeriesFilter(env_id="e1"), since=T0 + 500) == []
    [series] = await store.history(SeriesFilter(env_id="e1"), m.GPU_UTIL, T0, T0 + 180, 60, now=T0 + 200)
    assert [(p.t, p.count, p.min, p.max) for p in series.points] == [(T0, 60, 0, 59), (T0 + 60, 60, 0, 99),
                                                                      (T0 + 120, 60, 20, 79)]
    assert series.points[0].avg == sum(range(60)) / 60
    assert (series.workspace_id, series.gpu_uuid) == ("w1", "GPU-a")
    fleet = await store.history(SeriesFilter(), m.GPU_UTIL, T0, T0 + 180, 180, now=T0 + 200)
    assert sorted(s.env_id for s in fleet) == ["e1", "e2"]


async def test_compaction_keeps_aggregates_after_raw_retention(stores):
    name, store, _ = stores
    if name == "memory":
        pytest.skip("the in-memory store keeps raw samples only (tests)")
    await store.write(_samples())
    now = T0 + 600
    await store.compact(now)
    await asyncio.gather(store.compact(now), store.compact(now))  # concurrent compactions: same result
    later = T0 + 2 * 86400
    await store.compact(later)  # raw gone
    assert await store.latest(SeriesFilter(), since=0) == []
    [series] = await store.history(SeriesFilter(env_id="e1"), m.GPU_UTIL, T0, T0 + 180, 60, now=later)
    assert [(p.t, p.count, p.min, p.max) for p in series.points] == [(T0, 60, 0, 59), (T0 + 60, 60, 0, 99),
                                                                      (T0 + 120, 60, 20, 79)]
    [hourly] = await store.history(SeriesFilter(env_id="e1"), m.GPU_UTIL, T0, T0 + 3600, 3600, now=T0 + 60 * 86400)
    assert [(p.count, p.min, p.max) for p in hourly.points] == [(180, 0, 99)]


async def test_alert_episodes_open_once_and_move_on_once(stores):
    _, _, alerts = stores
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    rule = AlertRule.create(name="hot", type=RuleType.GPU_OVERHEAT, scope=Scope.PLATFORM, workspace_id=None,
                            created_by="u1", now=now)
    await alerts.add_rule(rule)
    pending = AlertRecord("a1", rule.id, None, "fp", {"host": "h1"}, AlertState(AlertStatus.PENDING, 1.0, 1.0))
    assert await alerts.open(pending) is True
    assert await alerts.open(AlertRecord("a2", rule.id, None, "fp", {}, pending.state)) is False  # one open per series
    [stored] = await alerts.open_alerts(rule.id)
    firing = AlertState(AlertStatus.FIRING, 1.0, 5.0, fired_at=5.0, value=90.0)
    from dataclasses import replace
    assert await alerts.save(replace(stored, state=firing)) is True
    assert await alerts.save(replace(stored, state=firing)) is False  # a second replica with the old version
    [stored] = await alerts.open_alerts(rule.id)
    resolved = replace(firing, status=AlertStatus.RESOLVED, resolved_at=9.0)
    assert await alerts.save(replace(stored, state=resolved)) is True
    assert await alerts.open_alerts(rule.id) == []
    assert await alerts.open(AlertRecord("a3", rule.id, None, "fp", {}, pending.state)) is True  # a new episode
    items, total = await alerts.list_alerts(workspace_id=None, platform=True, status=None, limit=10, offset=0)
    assert total == 2 and {a.state.status for a in items} == {AlertStatus.RESOLVED, AlertStatus.PENDING}
    assert items[0].rule_name == "hot"


async def test_late_samples_are_folded_in_by_concurrent_replicas(stores):
    """Writers and compactions of two replicas interleaved, samples arriving late:
    the rollups end up equal to the raw samples' aggregates (the shared/exclusive lock
    keeps a write from slipping between a rollup's read and its watermark)."""
    name, store, _ = stores
    if name == "memory":
        pytest.skip("the in-memory store keeps raw samples only (tests)")
    from tests.unit.monitoring.test_downsampling import expected_rollups

    replica = SqlMetricsStore(store._sessions)
    samples = [m.Sample(T0 + (i * 37) % 7200 + 0.5, m.GPU_UTIL, float(i % 97), "h1", f"e{i % 3}", "w1", f"GPU-{i % 3}")
               for i in range(1200)]
    batches = [samples[i:i + 50] for i in range(0, len(samples), 50)]

    async def writer(which, part):
        for b in part:
            await which.write(b)

    async def compactor(which, clocks):
        for now in clocks:
            await which.compact(now)

    clocks = [T0 + 1800 + 300 * k for k in range(20)]
    await asyncio.gather(writer(store, batches[::2]), writer(replica, batches[1::2]),
                         compactor(store, clocks), compactor(replica, clocks[::-1]))
    await store.compact(T0 + 3 * 3600)
    import sqlalchemy as sa

    async with store._sessions() as session:
        rows = (await session.execute(sa.text(
            "SELECT resolution, metric, host_id, env_id, gpu_uuid, bucket, workspace_id, count, sum, min, max "
            "FROM metric_rollups"))).all()
    assert {tuple(r[:7]): tuple(r[7:]) for r in rows} == expected_rollups(samples)
