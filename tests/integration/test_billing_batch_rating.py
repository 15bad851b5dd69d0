"""Rating in bulk equals rating one environment at a time.

The SQL stores rate many environments per statement (PostgreSQL: new segments by binary
COPY, changed ones by one array upsert, the minute tick in one UPDATE). Over histories
with price changes, a month boundary, duplicated and late readings and a deletion, passes
of ``Metering.meter`` with large batches on SQLite and PostgreSQL leave exactly the
segments (every column) and ledger charges that the in-memory store leaves when it meters
one environment per batch."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from remotegpu.adapters.billing.memory_store import InMemoryBillingStore
from remotegpu.adapters.billing.sql_store import SqlBillingStore
from remotegpu.adapters.db.engine import create_engine, create_session_factory
from remotegpu.adapters.db.migrate import upgrade_async, upgrade_engine
from remotegpu.application.billing.metering import Metering
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.billing.prices import Price, ResourceKind
from tests.support.components import postgres_url

MODEL = "NVIDIA A100-SXM4-80GB"
T0 = datetime(2026, 4, 30, 20, 0, 0, tzinfo=timezone.utc)  # the month ends 4 h in
ENVS = 150
STEPS = [("queued", 0), ("starting", 60), ("running", 90), ("stopping", 3 * 3600), ("stopped", 3 * 3600 + 20),
         ("starting", 4 * 3600), ("running", 4 * 3600 + 30), ("stopped", 6 * 3600), ("deleted", 7 * 3600)]


def _prices() -> list[Price]:
    start = T0 - timedelta(days=40)
    return [Price("g1", ResourceKind.GPU, MODEL, 1200, start),
            Price("g2", ResourceKind.GPU, MODEL, 1000, T0 + timedelta(hours=2, seconds=17)),  # a change mid-history
            Price("c1", ResourceKind.CPU, "", 10, start), Price("m1", ResourceKind.MEMORY, "", 2, start),
            Price("d1", ResourceKind.DISK, "", 24, start), Price("n1", ResourceKind.NOGPU, "", 5, start),
            Price("d2", ResourceKind.DISK, "", 30, T0 + timedelta(hours=5))]


def _history(rnd: random.Random) -> list[list[Reading]]:
    """Per pass, the readings that arrive before it (some late, some twice)."""
    arrivals: list[list[Reading]] = [[] for _ in range(6)]
    for i in range(ENVS):
        env, ws = f"env-{i:04d}", f"ws-{i % 7}"
        with_gpu = i % 5 != 0
        steps = STEPS[:rnd.randint(3, len(STEPS))]
        for n, (status, offset) in enumerate(steps):
            at = T0 + timedelta(seconds=offset + (i * 37) % 900, microseconds=rnd.randint(0, 999_999))
            r = Reading(env, ws, "owner", at, status, MODEL, 1 + i % 4, with_gpu, 2 + i % 3, 8, 10 + i % 50, n)
            due = min(5, offset // 3600 + (1 if rnd.random() < 0.15 else 0))  # late now and then
            arrivals[due].append(r)
            if rnd.random() < 0.1:
                arrivals[rnd.randint(due, 5)].append(r)  # delivered twice
    return arrivals


async def _run(store, batch: int, arrivals: list[list[Reading]]) -> None:
    async with store.transaction() as tx:
        for p in _prices():
            await tx.add_price(p)
        await tx.commit()
    clock = FrozenClock(T0 + timedelta(minutes=59))
    metering = Metering(store, clock)
    for readings in arrivals:  # pass k at T0 + k h 59 min, then two minute ticks
        if readings:
            async with store.transaction() as tx:
                await tx.add_readings(readings)
                await tx.commit()
        await metering.meter(batch=batch)
        for _ in range(2):  # minute ticks: open segments re-rated
            clock.advance(seconds=60)
            await metering.meter(batch=batch)
        clock.advance(seconds=3600 - 120)


async def _state(store) -> tuple[list, list]:
    async with store.transaction() as tx:
        envs = [f"env-{i:04d}" for i in range(ENVS)]
        segments = sorted(((rs.segment, rs.rated_until, rs.amount, rs.charged)
                           for group in (await tx.segments(envs)).values() for rs in group), key=lambda x: x[0].key)
        charges = []
        for ws in sorted({f"ws-{i % 7}" for i in range(ENVS)}):
            charges.extend(sorted((e.workspace_id, e.kind.value, e.amount, e.period, e.reference)
                                  for e in await tx.all_entries(ws)))
    return segments, charges


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_large_batches_rate_exactly_like_one_environment_at_a_time(backend, tmp_path):
    arrivals = _history(random.Random(16))
    reference = InMemoryBillingStore()
    await _run(reference, 1, arrivals)
    expected = await _state(reference)
    assert len(expected[0]) > 4 * ENVS and expected[1]

    schema = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}"
        await upgrade_async(url)
        engine = create_engine(url)
    else:
        url, schema = postgres_url(), f"batchrate_{uuid.uuid4().hex[:12]}"
        admin = create_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await admin.dispose()
        engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
        await upgrade_engine(engine)
    try:
        store = SqlBillingStore(create_session_factory(engine))
        await _run(store, 10_000, arrivals)
        segments, charges = await _state(store)
    finally:
        await engine.dispose()
        if schema is not None:
            admin = create_engine(url)
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()
    assert segments == expected[0]
    assert charges == expected[1]
