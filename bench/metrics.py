"""Metrics: ingestion through the real agent → server path on PostgreSQL, and range
queries over 30 days of 1-minute data for one environment; baselines in the same run.

Ingestion: a `remotegpu serve` process on PostgreSQL (REMOTEGPU_BENCH_POSTGRES_URL),
``--hosts`` registered hosts of 8 fake GPUs; each host's agent link (HttpAgentLink,
one kept-alive session per host, as the agent) sends batches of ``--batch`` rows
(8 GPUs × 6 DCGM fields × seconds) to /api/v1/agent/metrics, all hosts at once, for
``--seconds``. Baselines: the same rows COPYed, and INSERTed (executemany), straight
into metric_points with asyncpg (in batches of the same size, one transaction each),
and COPYed into the 7-column, 4-index table raw samples had before migration 0027.
Aim (issue 18): ≥ 50,000 samples/s. On a shared machine the rate follows the load, so
the CPU seconds per 1,000 samples are printed too: of the server process, of its
PostgreSQL backends, and of the bench's agents (the client), from /proc.

Range query: 1-minute rollups of 30 days for ``--envs`` environments (one GPU series
each) are COPYed in, minute by minute across environments as compaction writes them; then MetricsStore.history of one environment, 30 days at a 1-hour
and a 10-minute step, ``--queries`` times: p50/p99. Baseline: the bare GROUP BY over
the same rows through asyncpg. Aim: p99 < 100 ms.

    REMOTEGPU_BENCH_POSTGRES_URL=postgresql+asyncpg://… .venv/bin/python bench/metrics.py [--hosts 40] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from remotegpu.adapters.db.engine import create_engine  # noqa: E402
from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe  # noqa: E402
from remotegpu.adapters.fleet.http_link import HttpAgentLink  # noqa: E402
from remotegpu.adapters.monitoring.sql_store import SqlMetricsStore  # noqa: E402
from remotegpu.application.fleet.agent_protocol import HostReport  # noqa: E402
from remotegpu.application.monitoring.ports import SeriesFilter  # noqa: E402
from remotegpu.domain.monitoring import metrics as m  # noqa: E402
from tests.support.live_server import live_server  # noqa: E402
from tests.support.postgres import reset_schema  # noqa: E402

FIELDS = [m.GPU_UTIL, m.FB_USED, m.FB_FREE, m.POWER_USAGE, m.GPU_TEMP, m.SM_CLOCK]


def rows_for(uuids: list[str], batch: int, t0: float) -> list[list]:
    rows = []
    second = 0
    while len(rows) < batch:
        for uuid in uuids:
            for name in FIELDS:
                rows.append([t0 + second, name, float((second * 7) % 100), "", uuid])
        second += 1
    return rows[:batch]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ingest(server_url: str, admin_token: str, hosts: int, batch: int, seconds: float, dsn: str,
                 server_pid: int) -> tuple[float, int, dict[str, float]]:
    import aiohttp

    links, tokens, batches = [], [], []
    async with aiohttp.ClientSession() as http:
        for i in range(hosts):
            async with http.post(server_url + "/api/v1/hosts", json={"name": f"bench-{i}-{time.time_ns()}"},
                                 headers={"Authorization": f"Bearer {admin_token}"}) as r:
                join = (await r.json())["join_token"]
            probe = FakeGpuProbe("8xNVIDIA H100 80GB HBM3", seed=f"bench-{i}-{time.time_ns()}")
            link = HttpAgentLink(server_url)
            _, token = await link.register(join, f"bench-host-{i}", HostReport(
                gpus=probe.inventory(), cpu_cores=64, memory_gib=512, disk_gib=1000, runtime="memory", runtime_healthy=True,
                fake_gpus=True))
            links.append(link)
            tokens.append(token)
            batches.append(rows_for([g.uuid for g in probe.inventory()], batch, time.time()))
    sent = 0
    conn = await asyncpg.connect(dsn)
    backends = [r["pid"] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    backend_cpu0 = {p: _cpu_seconds(p) for p in backends}
    cpu0 = (_cpu_seconds(server_pid), sum(backend_cpu0.values()), time.process_time())
    stop = time.monotonic() + seconds

    async def host(i: int) -> None:
        nonlocal sent
        while time.monotonic() < stop:
            for row in batches[i]:
                row[0] = time.time()
            accepted = await links[i].send_metrics(tokens[i], batches[i])
            assert accepted == len(batches[i]), accepted
            sent += accepted

    started = time.monotonic()
    await asyncio.gather(*(host(i) for i in range(hosts)))
    elapsed = time.monotonic() - started
    alive = {r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")}
    cpu1 = (_cpu_seconds(server_pid), sum(_cpu_seconds(p) for p in backends if p in alive), time.process_time())
    # a backend that closed meanwhile counts neither before nor after
    cpu0 = (cpu0[0], cpu0[1] - sum(before for p, before in backend_cpu0.items() if p not in alive), cpu0[2])
    await conn.close()
    for link in links:
        await link.close()
    per_k = {what: (b - a) / sent * 1000 for what, a, b in zip(("server", "postgres", "client"), cpu0, cpu1)}
    return sent / elapsed, sent, per_k


async def baseline_ingest(dsn: str, rows: list[list], batch: int) -> tuple[float, float, float]:
    """COPY / INSERT of ``rows`` in batches (one transaction each), into metric_points,
    and COPY into the table raw samples had before (7 columns, 4 indexes)."""
    conn = await asyncpg.connect(dsn)
    try:
        series = {}
        records = [(series.setdefault((r[1], r[4]), len(series) + 1), r[0], r[2]) for r in rows]
        batches = [records[i:i + batch] for i in range(0, len(records), batch)]
        started = time.monotonic()
        for b in batches:
            async with conn.transaction():
                await conn.copy_records_to_table("metric_points", records=b, columns=["series_id", "ts", "value"])
        copy_rate = len(records) / (time.monotonic() - started)
        started = time.monotonic()
        for b in batches[: max(1, len(batches) // 4)]:
            async with conn.transaction():
                await conn.executemany("INSERT INTO metric_points (series_id, ts, value) VALUES ($1, $2, $3)", b)
        insert_rate = sum(map(len, batches[: max(1, len(batches) // 4)])) / (time.monotonic() - started)
        await conn.execute("DROP TABLE IF EXISTS bench_wide_samples; CREATE TABLE bench_wide_samples ("
                           "ts float8 NOT NULL, metric varchar(64) NOT NULL, host_id varchar(36) NOT NULL, "
                           "env_id varchar(36) NOT NULL, workspace_id varchar(36) NOT NULL, gpu_uuid varchar(64) NOT NULL, "
                           "value float8 NOT NULL); CREATE INDEX ON bench_wide_samples (env_id, metric, ts); "
                           "CREATE INDEX ON bench_wide_samples (host_id, metric, ts); "
                           "CREATE INDEX ON bench_wide_samples (workspace_id, metric, ts); CREATE INDEX ON bench_wide_samples (ts)")
        wide = [(r[0], r[1], "3f2a4b7c-0000-4000-8000-000000000001", "", "", r[4], r[2]) for r in rows]
        started = time.monotonic()
        for i in range(0, len(wide), batch):
            async with conn.transaction():
                await conn.copy_records_to_table("bench_wide_samples", records=wide[i:i + batch], columns=[
                    "ts", "metric", "host_id", "env_id", "workspace_id", "gpu_uuid", "value"])
        wide_rate = len(wide) / (time.monotonic() - started)
        await conn.execute("DROP TABLE bench_wide_samples")
        return copy_rate, insert_rate, wide_rate
    finally:
        await conn.close()


async def range_queries(dsn: str, url: str, envs: int, queries: int) -> list[tuple[str, float, float]]:
    now = time.time()
    start = m.bucket_of(now - 30 * 86400 + 120, 60)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM metric_rollups")
        cols = ["resolution", "metric", "host_id", "env_id", "gpu_uuid", "bucket", "workspace_id", "count", "sum", "min", "max"]
        minutes = range(start, int(now) - 120, 60)
        for i in range(0, len(minutes), 1440):  # a day at a time, every environment's minute after minute
            await conn.copy_records_to_table("metric_rollups", columns=cols, records=[
                (60, m.GPU_UTIL, "bench-host", f"env-{e}", f"GPU-{e}", b, "ws", 60, float(30 * 60), 10.0, 50.0)
                for b in minutes[i:i + 1440] for e in range(envs)])
        for res in (600, 3600):
            await conn.copy_records_to_table("metric_rollups", columns=cols, records=[
                (res, m.GPU_UTIL, "bench-host", f"env-{e}", f"GPU-{e}", b, "ws", res, float(30 * res), 10.0, 50.0)
                for b in range(m.bucket_of(start, res), m.bucket_of(now - 120, res), res) for e in range(envs)])
        records = minutes
        # as compaction leaves them: minutes and hours rolled up to their watermarks
        await conn.execute("DELETE FROM metric_compaction")
        await conn.execute("INSERT INTO metric_compaction VALUES (60, $1), (600, $2), (3600, $3)",
                           m.bucket_of(now - 120, 60), m.bucket_of(now - 120, 600), m.bucket_of(now - 120, 3600))
        await conn.execute("VACUUM ANALYZE metric_rollups")  # as autovacuum leaves 30 days of rows
        per_env = len(records)
        engine = create_engine(url)
        store = SqlMetricsStore(async_sessionmaker(engine, expire_on_commit=False))
        out = []
        for step in (3600, 600):
            times = []
            for _ in range(queries):
                t = time.perf_counter()
                [series] = await store.history(SeriesFilter(env_id="env-7"), m.GPU_UTIL, start, now, step, now=now)
                times.append(time.perf_counter() - t)
            assert sum(p.count for p in series.points) >= per_env * 60 - 3600, sum(p.count for p in series.points)
            base = []
            tier = []
            sql = ("SELECT host_id, env_id, gpu_uuid, floor((bucket - $1) / $2) AS k, sum(count), sum(sum), min(min), max(max) "
                   "FROM metric_rollups WHERE resolution = $6 AND metric = $3 AND env_id = $4 AND bucket >= $1 AND bucket < $5 "
                   "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")
            for _ in range(queries):
                t = time.perf_counter()
                await conn.fetch(sql, float(start), float(step), m.GPU_UTIL, "env-7", float(now), 60)
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                await conn.fetch(sql, float(start), float(step), m.GPU_UTIL, "env-7", float(now), step)
                tier.append(time.perf_counter() - t)
            out.append((f"30 days, step {step} s ({len(series.points)} points)", _pct(times), _pct(base), _pct(tier)))
        await engine.dispose()
        return out, per_env
    finally:
        await conn.close()


def _pct(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=40)
    p.add_argument("--batch", type=int, default=480, help="rows per batch (480 = 8 GPUs × 6 fields × 10 s)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--envs", type=int, default=20)
    p.add_argument("--queries", type=int, default=50)
    args = p.parse_args()
    url = os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL")
    if not url:
        sys.exit("set REMOTEGPU_BENCH_POSTGRES_URL=postgresql+asyncpg://…")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    await asyncio.to_thread(reset_schema, url)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, live_server(Path(tmp) / "data", REMOTEGPU_DATABASE_URL=url,
                                                            REMOTEGPU_EMBEDDED_AGENT="false") as server:
        token = server.login("admin", "admin-password-123")
        rate, sent, per_k = await ingest(server.url, token, args.hosts, args.batch, args.seconds, dsn, server.process.pid)
    load_ingest = os.getloadavg()[0]
    rows = [list(r) for r in rows_for([f"GPU-{i}" for i in range(8)], args.batch * 40, time.time())]
    copy_rate, insert_rate, wide_rate = await baseline_ingest(dsn, rows, args.batch)
    queries, per_env = await range_queries(dsn, url, args.envs, args.queries)
    load_end = os.getloadavg()[0]
    print(f"\nmetrics bench (PostgreSQL; load average {load:.1f} at start, {load_ingest:.1f} after ingestion, "
          f"{load_end:.1f} at the end; {os.cpu_count()} CPUs)\n")
    print("| ingestion | samples/s |\n|---|---|")
    print(f"| agent → server (/api/v1/agent/metrics, {args.hosts} hosts, batches of {args.batch}, {sent:,} samples) | {rate:,.0f} |")
    print(f"| baseline: COPY straight into metric_points (batches of {args.batch}) | {copy_rate:,.0f} |")
    print(f"| baseline: INSERT executemany into metric_points | {insert_rate:,.0f} |")
    print(f"| before 0027: COPY into the 7-column, 4-index raw table | {wide_rate:,.0f} |")
    print("\n| CPU seconds per 1,000 samples (agent → server) | server | its PostgreSQL backends | agents (client) |")
    print("|---|---|---|---|")
    print(f"| | {per_k['server']:.4f} | {per_k['postgres']:.4f} | {per_k['client']:.4f} |")
    print(f"\n| range query, one environment of {args.envs} ({per_env:,} 1-min rows each) | store p50 / p99 ms "
          "| bare SQL over the 1-min rows p50 / p99 ms | bare SQL over the step's tier p50 / p99 ms |")
    print("|---|---|---|---|")
    for what, (s50, s99), (b50, b99), (t50, t99) in queries:
        print(f"| {what} | {s50:.1f} / {s99:.1f} | {b50:.1f} / {b99:.1f} | {t50:.1f} / {t99:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
