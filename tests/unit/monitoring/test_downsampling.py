"""Downsampling is exact: every stored aggregate, and every range query answered from
them, equals the raw samples' count, min, max and avg over the same window."""

from __future__ import annotations

import asyncio
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade
from remotegpu.adapters.monitoring.sql_store import SqlMetricsStore
from remotegpu.application.monitoring.ports import SeriesFilter
from remotegpu.domain.monitoring.metrics import ROLLUP_RESOLUTIONS, Retention, Sample, aggregate, downsample, quantize

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # an hour boundary
DAY = 86400

values = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False).map(quantize)
samples_st = st.lists(st.tuples(st.floats(min_value=0, max_value=3 * 3600 - 0.001), values, st.sampled_from(["e1", "e2"])),
                      min_size=1, max_size=150)


@given(samples_st)
def test_downsample_in_memory_equals_raw_per_bucket(rows):
    samples = [Sample(T0 + dt, "DCGM_FI_DEV_GPU_UTIL", v, "h1", env) for dt, v, env in rows]
    for resolution in (60, 3600):
        for rollup in downsample(samples, resolution):
            raw = [s.value for s in samples if s.env_id == rollup.env_id
                   and rollup.bucket <= s.ts < rollup.bucket + resolution]
            assert rollup.agg == aggregate(raw)
            assert rollup.agg.avg == math.fsum(raw) / len(raw)


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2 ** 40, 2 ** 40),
                 st.integers(-2 ** 22, 2 ** 22).map(lambda k: k / 2048)))  # k / 2048: ties half-way between quanta
def test_quantize_is_round_to_the_nearest_1024th(v):
    """The fast rounding equals ``round(v * 1024) / 1024`` (ties to even) bit for bit."""
    expected = round(v * 1024) / 1024 if abs(v) < 2.0 ** 31 else float(round(v))
    got = quantize(v)
    assert got == expected and math.copysign(1, got) == math.copysign(1, expected)


_loop = asyncio.new_event_loop()


def _store(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = create_engine(url)
    return SqlMetricsStore(async_sessionmaker(engine, expire_on_commit=False), retention=Retention()), engine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=samples_st, window=st.tuples(st.integers(0, 179), st.integers(1, 180)), step_minutes=st.integers(1, 60))
def test_sql_rollups_and_range_queries_equal_the_raw_samples_exactly(tmp_path_factory, rows, window, step_minutes):
    store, engine = _store(tmp_path_factory)
    samples = [Sample(T0 + dt, "DCGM_FI_DEV_GPU_UTIL", v, "h1", env, "w1") for dt, v, env in rows]
    first, length = window
    start, end = T0 + first * 60, T0 + min(180, first + length) * 60
    step = step_minutes * 60

    async def run():
        await store.write(samples)
        now = T0 + 3 * 3600 + 600  # every bucket finished
        raw_answer = await store.history(SeriesFilter(env_id="e1"), "DCGM_FI_DEV_GPU_UTIL", start, end, step, now=now)
        await store.compact(now)
        await store.compact(now)  # idempotent
        # 25 h later the raw samples are past retention: answers come from 1-minute rollups
        later = now + DAY + 3600
        await store.compact(later)
        rolled = await store.history(SeriesFilter(env_id="e1"), "DCGM_FI_DEV_GPU_UTIL", start, end, step, now=later)
        hourly = await store.history(SeriesFilter(env_id="e1"), "DCGM_FI_DEV_GPU_UTIL", T0, T0 + 3 * 3600, 3600,
                                     now=T0 + 40 * DAY)
        await engine.dispose()
        return raw_answer, rolled, hourly

    raw_answer, rolled, hourly = _loop.run_until_complete(run())
    for answer, origin in ((raw_answer, start), (rolled, start)):
        expected = {}
        for s in samples:
            if s.env_id == "e1" and start <= s.ts < end:
                expected.setdefault(int((s.ts - origin) // step), []).append(s.value)
        points = answer[0].points if answer else []
        assert [int((p.t - origin) // step) for p in points] == sorted(expected)
        for p in points:
            vals = expected[int((p.t - origin) // step)]
            assert (p.count, p.min, p.max) == (len(vals), min(vals), max(vals))
            assert p.avg == math.fsum(vals) / len(vals)
    # one-hour aggregates (a year's resolution) over the whole hours
    assert bool(hourly) == any(s.env_id == "e1" for s in samples)
    for p in (hourly[0].points if hourly else []):
        vals = [s.value for s in samples if s.env_id == "e1" and p.t <= s.ts < p.t + 3600]
        assert (p.count, p.min, p.max, p.avg) == (len(vals), min(vals), max(vals), math.fsum(vals) / len(vals))


# --- late samples: rollups equal the raw aggregates whatever the arrival order ------------

_template: dict[str, object] = {}


def _fresh_store(tmp_path_factory):
    """A migrated SQLite file per example (copied from one migrated template: fast)."""
    import shutil

    if "path" not in _template:
        path = tmp_path_factory.mktemp("late-template") / "t.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        _template["path"] = path
    path = tmp_path_factory.mktemp("late") / "m.db"
    shutil.copy(_template["path"], path)
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    return SqlMetricsStore(async_sessionmaker(engine, expire_on_commit=False)), engine


async def stored_rollups(engine) -> dict[tuple, tuple]:
    import sqlalchemy as sa

    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT resolution, metric, host_id, env_id, gpu_uuid, bucket, workspace_id, count, sum, min, max "
            "FROM metric_rollups"))).all()
    return {tuple(r[:7]): tuple(r[7:]) for r in rows}


def expected_rollups(samples: list[Sample]) -> dict[tuple, tuple]:
    out = {}
    for resolution in ROLLUP_RESOLUTIONS:
        for r in downsample(samples, resolution):
            key = (resolution, r.metric, r.host_id, r.env_id, r.gpu_uuid, r.bucket, r.workspace_id)
            out[key] = (r.agg.count, r.agg.sum, r.agg.min, r.agg.max)
    return out


# Samples over 2 hours, each arriving with a delay of up to an hour (what ingestion
# accepts), in batches; compaction runs between batches at the arrival clock.
late_rows = st.lists(st.tuples(st.floats(min_value=0, max_value=2 * 3600 - 0.001), values, st.sampled_from(["e1", "e2"]),
                               st.integers(0, 3600)), min_size=1, max_size=120)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=late_rows, batch=st.integers(1, 40))
def test_rollups_equal_raw_aggregates_whatever_the_arrival_order(tmp_path_factory, rows, batch):
    store, engine = _fresh_store(tmp_path_factory)
    samples = [Sample(T0 + dt, "DCGM_FI_DEV_GPU_UTIL", v, "h1", env, "w1" if env == "e1" else "w2", "GPU-" + env)
               for dt, v, env, _ in rows]
    arrivals = sorted(zip([T0 + dt + delay for dt, _, _, delay in rows], range(len(rows)), samples))

    async def run():
        for i in range(0, len(arrivals), batch):
            chunk = arrivals[i:i + batch]
            await store.write([s for _, _, s in chunk])
            await store.compact(max(at for at, _, _ in chunk))  # some buckets are rolled up before their late samples
        await store.compact(T0 + 4 * 3600)  # every bucket finished, late ones included
        first = await stored_rollups(engine)
        await store.compact(T0 + 4 * 3600)  # idempotent
        second = await stored_rollups(engine)
        await engine.dispose()
        return first, second

    first, second = _loop.run_until_complete(run())
    assert first == expected_rollups(samples)
    assert second == first
