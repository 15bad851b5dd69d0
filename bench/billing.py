"""Billing on PostgreSQL: rating throughput and monthly bill generation, each with its
baseline measured in the same run.

1. **Rating** — ``--envs`` environments (default 10,000) with a lifecycle of readings
   each (created, started, running, stopped, started again, running: 7 segments) across a
   price change; one metering pass (``Metering.meter``: reads the readings and stored
   segments, derives, rates, upserts, charges the ledger) is timed → segments/s. A second
   pass over the same open segments (what the minute tick does) is timed too. Baseline:
   the same segment rows written with a bare multi-row ``INSERT`` (no rating), and a bare
   ``INSERT … SELECT`` copy of them inside the database.
2. **Monthly bills** — ``--segments`` closed segments (default 1,000,000) of last month
   across ``--workspaces`` workspaces (default 10,000) with their ledger charges — 20 segments
   per environment, its quantity fixed, a price change in mid-month: 8 lines per environment —, loaded
   with ``INSERT … SELECT generate_series``; ``BillingService.finalize`` (on PostgreSQL one
   ``INSERT … SELECT``: lines grouped and aggregated to JSON, open segments and unequal
   charge sums excluded) is timed.
   Baseline: a bare ``INSERT INTO … SELECT workspace_id, sum(amount) … GROUP BY`` of the
   same rows. Aims (issue 16): ≥ 10,000 segments/s; bills for 1,000,000 segments < 60 s.

    REMOTEGPU_BENCH_POSTGRES_URL=postgresql+asyncpg://… .venv/bin/python bench/billing.py [--envs N] [--segments N] [--workspaces N]

The database's public schema is dropped and migrated afresh: use a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from remotegpu.adapters.billing.sql_store import SqlBillingStore  # noqa: E402
from remotegpu.adapters.db import tables as t  # noqa: E402
from remotegpu.adapters.db.engine import create_engine  # noqa: E402
from remotegpu.adapters.db.migrate import upgrade_async  # noqa: E402
from remotegpu.application.billing.metering import Metering  # noqa: E402
from remotegpu.application.billing.service import BillingService  # noqa: E402
from remotegpu.application.shared.clock import FrozenClock  # noqa: E402
from remotegpu.adapters.billing.offline import OfflineTransfers  # noqa: E402
from remotegpu.domain.billing.metering import Reading  # noqa: E402
from remotegpu.domain.billing.prices import Price, ResourceKind  # noqa: E402
from tests.support.postgres import reset_schema  # noqa: E402

MODEL = "NVIDIA A100-SXM4-80GB"
NOW = datetime(2026, 5, 20, 12, 0, 0, tzinfo=timezone.utc)


def row(label: str, value: str, baseline: str, note: str = "") -> None:
    print(f"| {label} | {value} | {baseline} | {note} |", flush=True)


async def seed_rating(store: SqlBillingStore, envs: int) -> None:
    prices = [Price(str(uuid.uuid4()), ResourceKind.GPU, MODEL, 1200, NOW - timedelta(days=30)),
              Price(str(uuid.uuid4()), ResourceKind.GPU, MODEL, 1000, NOW - timedelta(hours=5)),  # a price change
              Price(str(uuid.uuid4()), ResourceKind.CPU, "", 10, NOW - timedelta(days=30)),
              Price(str(uuid.uuid4()), ResourceKind.MEMORY, "", 2, NOW - timedelta(days=30)),
              Price(str(uuid.uuid4()), ResourceKind.DISK, "", 24, NOW - timedelta(days=30))]
    async with store.transaction() as tx:
        for p in prices:
            await tx.add_price(p)
        await tx.commit()
    steps = [("queued", 0), ("starting", 60), ("running", 90), ("stopping", 3 * 3600), ("stopped", 3 * 3600 + 20),
             ("starting", 4 * 3600), ("running", 4 * 3600 + 30)]
    start = NOW - timedelta(hours=8)
    batch: list[Reading] = []
    for i in range(envs):
        env_id, ws = str(uuid.uuid4()), f"ws-{i % 1000:06d}"
        for n, (status, offset) in enumerate(steps):
            batch.append(Reading(env_id, ws, "owner", start + timedelta(seconds=offset + i % 600), status, MODEL, 1, True, 8, 32,
                                 100, n))
        if len(batch) >= 20_000 or i == envs - 1:
            async with store.transaction() as tx:
                await tx.add_readings(batch)
                await tx.commit()
            batch = []


async def bench_rating(engine, store: SqlBillingStore, envs: int) -> None:
    await seed_rating(store, envs)
    clock = FrozenClock(NOW)
    metering = Metering(store, clock)
    t0 = time.perf_counter()
    result = await metering.meter()
    first = time.perf_counter() - t0
    clock.advance(seconds=60)
    t0 = time.perf_counter()
    again = await metering.meter()
    tick = time.perf_counter() - t0
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(t.usage_segments))).scalar_one()
        rows = [dict(r._mapping) for r in await conn.execute(sa.select(t.usage_segments))]
    # Baselines: the same rows, bare INSERT (client → server), and INSERT … SELECT inside the server.
    scratch = sa.Table("bench_segments", sa.MetaData(), *[sa.Column(c.name, c.type) for c in t.usage_segments.columns])
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: scratch.create(c))
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            await conn.execute(scratch.insert(), rows[i:i + 5000])
    bare = time.perf_counter() - t0
    async with engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE bench_segments"))
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO bench_segments SELECT * FROM usage_segments"))
    copy = time.perf_counter() - t0
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE bench_segments"))
    row(f"first pass: {envs:,} environments, {result.segments:,} segments rated and written",
        f"{result.segments / first:,.0f} segments/s ({first:.2f} s)",
        f"bare INSERT {count / bare:,.0f} rows/s ({bare:.2f} s); INSERT…SELECT {count / copy:,.0f} rows/s ({copy:.2f} s)",
        f"{sum(result.charged.values()):,} minor units charged")
    row(f"minute tick: {again.metered:,} environments with open segments re-rated",
        f"{again.segments / tick:,.0f} segments/s ({tick:.2f} s, {again.segments:,} segments)", "", "")


async def bench_bills(engine, sessions, segments: int, workspaces: int) -> None:
    period, start = "2026-04", "2026-04-01 00:00:00+00"
    per_env = 20  # segments of one environment in the month (stop/start cycles, price changes)
    async with engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE usage_segments, ledger_entries, bills"))
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        # Segments: environment = n / per_env, workspace = environment % workspaces; 1 h each, closed.
        await conn.execute(sa.text(f"""
            INSERT INTO usage_segments (key, environment_id, workspace_id, owner_id, kind, model, quantity, start_at, end_at,
                                        price_id, unit_price, period, rated_until, amount, charged)
            SELECT 'k' || n, 'env-' || (n / {per_env}), 'ws-' || lpad(((n / {per_env}) % {workspaces})::text, 6, '0'), 'owner',
                   (ARRAY['gpu','cpu','memory','disk'])[1 + n % 4], CASE WHEN n % 4 = 0 THEN '{MODEL}' ELSE '' END,
                   1 + (n / {per_env}) % 8,
                   timestamptz '{start}' + (n % 600) * interval '1 hour', timestamptz '{start}' + (n % 600 + 1) * interval '1 hour',
                   'price', 100 + n % 4 + (n / ({per_env} / 2)) % 2, '{period}',
                   timestamptz '{start}' + (n % 600 + 1) * interval '1 hour',
                   (1 + (n / {per_env}) % 8) * (100 + n % 4 + (n / ({per_env} / 2)) % 2),
                   (1 + (n / {per_env}) % 8) * (100 + n % 4 + (n / ({per_env} / 2)) % 2)
            FROM generate_series(0, {segments - 1}) AS n"""))
        await conn.execute(sa.text(f"""
            INSERT INTO ledger_entries (id, workspace_id, kind, amount, at, reason, actor_id, reference, period, expires_at)
            SELECT 'c-' || workspace_id, workspace_id, 'charge', -sum(amount), timestamptz '2026-05-01 00:01:00+00', 'usage',
                   NULL, 'charge:' || workspace_id, '{period}', NULL
            FROM usage_segments GROUP BY workspace_id"""))
        await conn.execute(sa.text("ANALYZE usage_segments"))
        await conn.execute(sa.text("ANALYZE ledger_entries"))
    load = time.perf_counter() - t0
    service = BillingService(SqlBillingStore(sessions), uow=None, clock=FrozenClock(NOW), payments=OfflineTransfers())
    t0 = time.perf_counter()
    made = await service.finalize(period)
    took = time.perf_counter() - t0
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE bench_bills (workspace_id text, period text, total bigint)"))
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"INSERT INTO bench_bills SELECT workspace_id, period, sum(amount) FROM usage_segments "
                                   f"WHERE period = '{period}' GROUP BY workspace_id, period"))
    base = time.perf_counter() - t0
    async with engine.begin() as conn:
        ok = (await conn.execute(sa.text("SELECT count(*) FROM bills b JOIN bench_bills x USING (workspace_id, period) "
                                         "WHERE b.total = x.total"))).scalar_one()
        await conn.execute(sa.text("DROP TABLE bench_bills"))
    row(f"monthly bills: {segments:,} segments, {workspaces:,} workspaces → {made:,} finalized bills",
        f"{took:.2f} s", f"bare INSERT…SELECT GROUP BY {base:.2f} s", f"{ok:,} totals equal the baseline's; load {load:.1f} s")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=10_000)
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--workspaces", type=int, default=10_000)
    args = ap.parse_args()
    url = os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL")
    if not url:
        sys.exit("set REMOTEGPU_BENCH_POSTGRES_URL to a scratch PostgreSQL database")
    await asyncio.to_thread(reset_schema, url)
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    store = SqlBillingStore(sessions)
    print("| bench | result | baseline | note |\n|---|---|---|---|", flush=True)
    try:
        await bench_rating(engine, store, args.envs)
        await bench_bills(engine, sessions, args.segments, args.workspaces)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
