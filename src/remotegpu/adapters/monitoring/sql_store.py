"""MetricsStore in the database (SQLite or PostgreSQL): the embedded default.

Raw samples go to ``metric_points`` as (series number, ts, value), the series' labels
once to ``metric_series`` (numbers cached per process); on PostgreSQL a batch is one
call of ``metric_points_write`` (migration 0039: lock, insert from arrays, late-bucket
marks, in one round trip, without a BEGIN/COMMIT of its own).
``compact`` rolls finished buckets up into
``metric_rollups`` (1 minute and 1 hour, aggregated by the database: count, sum, min,
max) and deletes what is past retention. A watermark per resolution
(``metric_compaction``) records how far it got; the row is locked while a replica
compacts (PostgreSQL ``FOR UPDATE``; SQLite serialises writers), and a bucket is
replaced as a whole, so compaction is idempotent and safe on every replica.

Late samples: a write that lands in a bucket already rolled up (its ts below the
watermark) marks that bucket in ``metric_late_buckets``, in the same transaction, and
the next ``compact`` recomputes the marked buckets from raw. So that no write slips
between a rollup's read and its watermark, writers hold a shared advisory lock and a
compaction step the exclusive one (PostgreSQL; SQLite has one writer at a time anyway).

Range queries read the finest resolution still kept for their start (raw for the last
24 h) and group into steps in the database.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.application.monitoring.ports import Point, Series, SeriesFilter
from remotegpu.domain.monitoring.metrics import ROLLUP_GRACE_SECONDS, ROLLUP_RESOLUTIONS, Retention, Sample, bucket_of

_SER, _P, _R, _W, _L = t.metric_series, t.metric_points, t.metric_rollups, t.metric_compaction, t.metric_late_buckets
#: Rolled up at most this much raw time per transaction (seconds).
COMPACT_CHUNK_SECONDS = 3600
#: Series numbers cached per process (then the cache starts afresh).
MAX_CACHED_SERIES = 500_000
#: pg_advisory_xact_lock key: writers take it shared, a compaction step exclusive.
_LOCK_KEY = 0x52475055_4D455452 - (1 << 63)  # "RGPUMETR", as a signed bigint


class SqlMetricsStore:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], *, retention: Retention | None = None) -> None:
        self._sessions = session_factory
        self.retention = retention or Retention()
        self._ids: dict[tuple[str, str, str, str], int] = {}
        self._one_call: bool | None = None  # PostgreSQL: metric_points_write exists (None: not tried yet)

    def _dialect(self, session: AsyncSession) -> str:
        return session.get_bind().dialect.name

    # --- write ----------------------------------------------------------------------

    async def write(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        ids = self._ids
        try:
            series = [ids[(s[1], s[3], s[4], s[6])] for s in samples]
        except KeyError:
            await self._resolve(samples)
            series = [ids[(s[1], s[3], s[4], s[6])] for s in samples]
        engine = self._sessions.kw.get("bind")
        if engine is not None and engine.dialect.name == "postgresql" and self._one_call is not False:
            # One round trip (migration 0039): lock, points and late-bucket marks in a
            # function, in the statement's own transaction; no BEGIN/COMMIT of ours, and a
            # pooled connection without an ORM session around it.
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                try:
                    await raw.fetchval(_PG_WRITE, series, [s[0] for s in samples], [s[2] for s in samples],
                                       list({s[0] for s in samples}))
                    self._one_call = True
                    return
                except Exception as exc:  # asyncpg's UndefinedFunctionError (asyncpg is imported by the dialect)
                    if self._one_call or type(exc).__name__ != "UndefinedFunctionError":
                        raise
                    self._one_call = False  # a database before 0039: the statements below
        await self._write_statements(samples, series)

    async def _write_statements(self, samples: Sequence[Sample], series: list[int]) -> None:
        records = [(i, s[0], s[2]) for i, s in zip(series, samples)]
        oldest = min(s[0] for s in samples)
        async with self._sessions() as session, session.begin():
            conn = await session.connection()
            if self._dialect(session) == "postgresql":
                raw = (await conn.get_raw_connection()).driver_connection
                await raw.execute(f"SELECT pg_advisory_xact_lock_shared({_LOCK_KEY})")
                await raw.copy_records_to_table("metric_points", records=records, columns=_POINT_COLUMNS)
            else:
                await conn.exec_driver_sql("INSERT INTO metric_points (series_id, ts, value) VALUES (?, ?, ?)", records)
            # Read after the lock (PostgreSQL) / the insert (SQLite: the write lock is ours):
            # no compaction step can commit between this read and our commit.
            marks = await self._late_marks(session, samples, oldest)
            if marks:
                insert = pg_insert if self._dialect(session) == "postgresql" else sqlite_insert
                await session.execute(insert(_L).on_conflict_do_nothing(),
                                      [{"resolution": r, "bucket": b} for r, b in sorted(marks)])

    async def _late_marks(self, session: AsyncSession, samples: Sequence[Sample], oldest: float) -> set[tuple[int, int]]:
        """(resolution, bucket) of every bucket already rolled up that ``samples`` fall in."""
        marks: set[tuple[int, int]] = set()
        for resolution, done in (await session.execute(sa.select(_W.c.resolution, _W.c.done_until))).all():
            if oldest < done:
                marks.update((resolution, bucket_of(s[0], resolution)) for s in samples if s[0] < done)
        return marks

    async def _resolve(self, samples: Sequence[Sample]) -> None:
        """Number the series of ``samples`` not cached yet (creating rows as needed)."""
        missing: dict[tuple[str, str, str, str], str] = {}
        for s in samples:
            key = (s[1], s[3], s[4], s[6])
            if key not in self._ids:
                missing[key] = s[5]
        if len(self._ids) + len(missing) > MAX_CACHED_SERIES:
            self._ids.clear()
        hosts = sorted({k[1] for k in missing})
        async with self._sessions() as session, session.begin():
            insert = pg_insert if self._dialect(session) == "postgresql" else sqlite_insert
            await session.execute(insert(_SER).on_conflict_do_nothing(), [
                {"metric": k[0], "host_id": k[1], "env_id": k[2], "workspace_id": ws, "gpu_uuid": k[3]}
                for k, ws in sorted(missing.items())])
            for i in range(0, len(hosts), 500):
                rows = await session.execute(sa.select(_SER.c.id, _SER.c.metric, _SER.c.host_id, _SER.c.env_id,
                                                       _SER.c.gpu_uuid).where(_SER.c.host_id.in_(hosts[i:i + 500])))
                for r in rows:
                    self._ids[(r.metric, r.host_id, r.env_id, r.gpu_uuid)] = r.id

    # --- queries --------------------------------------------------------------------

    @staticmethod
    def _where(table: sa.Table, flt: SeriesFilter) -> list[Any]:
        cond = []
        if flt.env_id is not None:
            cond.append(table.c.env_id == flt.env_id)
        if flt.host_id is not None:
            cond.append(table.c.host_id == flt.host_id)
        if flt.workspace_id is not None:
            cond.append(table.c.workspace_id == flt.workspace_id)
        if flt.gpu_uuid is not None:
            cond.append(table.c.gpu_uuid == flt.gpu_uuid)
        return cond

    async def latest(self, flt: SeriesFilter, *, since: float, metrics: Sequence[str] | None = None) -> list[Sample]:
        cond = [_P.c.ts >= since, *self._where(_SER, flt)]
        if metrics:
            cond.append(_SER.c.metric.in_(list(metrics)))
        newest = (sa.select(_P.c.series_id, sa.func.max(_P.c.ts).label("ts"))
                  .select_from(_P.join(_SER, _SER.c.id == _P.c.series_id)).where(*cond).group_by(_P.c.series_id)
                  .subquery())
        p2 = _P.alias("p2")
        query = sa.select(_SER, p2.c.ts, p2.c.value).select_from(
            newest.join(p2, sa.and_(p2.c.series_id == newest.c.series_id, p2.c.ts == newest.c.ts))
            .join(_SER, _SER.c.id == newest.c.series_id))
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        seen: dict[tuple, Sample] = {}
        for r in rows:
            seen[(r.metric, r.host_id, r.env_id, r.gpu_uuid)] = Sample(r.ts, r.metric, r.value, r.host_id, r.env_id,
                                                                      r.workspace_id, r.gpu_uuid)
        return [seen[k] for k in sorted(seen)]

    async def history(self, flt: SeriesFilter, metric: str, start: float, end: float, step: int, *,
                      now: float) -> list[Series]:
        resolution = self.retention.resolution_for(start, now)
        if resolution:
            step = max(resolution, step // resolution * resolution)
        origin = float(bucket_of(start, resolution)) if resolution else start
        parts = [(resolution, origin, end)]
        # The coarsest tier the step is a whole multiple of (hours inside the year kept,
        # 10 minutes or minutes inside the 30 days): it answers the same (exact) values
        # from 6-60× fewer rows, up to where it has been rolled up; the finer resolution
        # answers the rest. A 30-day chart at a 10-minute step reads 4,320 rows, not 43,200.
        series: dict[tuple, Series] = {}
        async with self._sessions() as session:
            raw = None
            if self._dialect(session) == "postgresql":
                # asyncpg directly, outside a transaction: one round trip per query, and records
                # read by position (SQLAlchemy's rows cost ~10 µs each: 40 ms for a 30-day chart).
                raw = (await (await session.connection()).get_raw_connection()).driver_connection
                done_by = dict(await raw.fetch("SELECT resolution, done_until FROM metric_compaction"))
            else:
                done_by = dict((await session.execute(sa.select(_W.c.resolution, _W.c.done_until))).all())
            for coarse in sorted(ROLLUP_RESOLUTIONS, reverse=True):
                if resolution < coarse and step % coarse == 0 and start >= now - self._kept(coarse):
                    aligned = float(bucket_of(start, coarse))
                    cut = aligned + max(0, (min(end, done_by.get(coarse) or 0) - aligned) // step) * step
                    if cut > aligned:
                        origin = aligned
                        parts = [(coarse, origin, cut)] + ([(resolution, cut, end)] if cut < end else [])
                        break
            for res, lo, hi in parts:
                if raw is not None and res:
                    rows = await raw.fetch(*_pg_rollup_query(res, flt, metric, origin, lo, hi, step))
                else:
                    rows = await self._query(session, res, flt, metric, origin, lo, hi, step)
                for host_id, env_id, gpu_uuid, ws, k, n, total, lo_, hi_ in rows:
                    key = (host_id, env_id, gpu_uuid)
                    s = series.get(key)
                    if s is None:
                        s = series[key] = Series(metric, host_id, env_id, ws or "", gpu_uuid)
                    n = int(n)
                    s.points.append(Point(origin + int(k) * step, float(total) / n, float(lo_), float(hi_), n))
        # Each series' points come in step order (queries order by step, parts run in time
        # order); the series themselves by (host, environment, GPU).
        return [series[k] for k in sorted(series)]

    def _kept(self, resolution: int) -> int:
        """How long a rollup resolution is kept: hours a year, finer ones (minutes, 10 minutes) 30 days."""
        return self.retention.hour_seconds if resolution >= 3600 else self.retention.minute_seconds

    async def _query(self, session: AsyncSession, resolution: int, flt: SeriesFilter, metric: str, origin: float,
                     lo: float, hi: float, step: int) -> list[Any]:
        """Steps of ``step`` seconds from ``origin`` over [lo, hi), from raw (0) or a rollup resolution."""
        if resolution == 0:
            floor = sa.func.floor if self._dialect(session) == "postgresql" else (lambda x: sa.cast(x, sa.Integer))
            o, st = sa.literal(origin, sa.Float(53)), sa.literal(float(step), sa.Float(53))
            query = sa.select(
                _SER.c.host_id, _SER.c.env_id, _SER.c.gpu_uuid, sa.func.max(_SER.c.workspace_id).label("ws"),
                floor((_P.c.ts - o) / st).label("k"), sa.func.count().label("n"), sa.func.sum(_P.c.value).label("total"),
                sa.func.min(_P.c.value).label("lo"), sa.func.max(_P.c.value).label("hi"),
            ).select_from(_P.join(_SER, _SER.c.id == _P.c.series_id)).where(
                _SER.c.metric == metric, _P.c.ts >= lo, _P.c.ts < hi, *self._where(_SER, flt))
        else:
            # Buckets and the origin are whole seconds (the origin is aligned to the
            # resolution) and bucket >= origin: integer division is the floor, and cheaper.
            o, st = sa.literal(int(origin), sa.BigInteger), sa.literal(int(step), sa.BigInteger)
            query = sa.select(
                _R.c.host_id, _R.c.env_id, _R.c.gpu_uuid, sa.func.max(_R.c.workspace_id).label("ws"),
                ((_R.c.bucket - o) // st).label("k"), sa.func.sum(_R.c.count).label("n"),
                sa.func.sum(_R.c.sum).label("total"), sa.func.min(_R.c.min).label("lo"), sa.func.max(_R.c.max).label("hi"),
            ).where(_R.c.resolution == resolution, _R.c.metric == metric, _R.c.bucket >= int(lo), _R.c.bucket < hi,
                    *self._where(_R, flt))
        query = query.group_by(sa.text("1"), sa.text("2"), sa.text("3"), sa.text("5")).order_by(sa.text("5"))
        return (await session.execute(query)).all()

    # --- compaction -----------------------------------------------------------------

    async def compact(self, now: float) -> None:
        for resolution in ROLLUP_RESOLUTIONS:
            while await self._compact_chunk(resolution, now):
                pass
        while await self._recompute_late(now):
            pass
        r = self.retention
        async with self._sessions() as session, session.begin():
            await session.execute(sa.delete(_P).where(_P.c.ts < now - r.raw_seconds))
            for resolution in ROLLUP_RESOLUTIONS:
                await session.execute(sa.delete(_R).where(_R.c.resolution == resolution,
                                                          _R.c.bucket < now - self._kept(resolution)))

    async def _exclusive(self, session: AsyncSession) -> bool:
        """Take the compaction lock (PostgreSQL; waits for writers in flight); True on PostgreSQL."""
        if self._dialect(session) != "postgresql":
            # SQLite: a write first, so this transaction holds the write lock before it reads.
            await session.execute(sa.text("DELETE FROM metric_late_buckets WHERE 1 = 0"))
            return False
        await session.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))
        return True

    def _rollup_select(self, resolution: int, postgres: bool, lo: float, hi: float) -> sa.Select:
        """Every series' aggregate per ``resolution`` bucket of the raw points in [lo, hi)."""
        floor = sa.func.floor if postgres else (lambda x: sa.cast(x, sa.Integer))
        bucket = (sa.cast(floor(_P.c.ts / resolution), sa.BigInteger) * resolution)
        return sa.select(
            sa.literal(resolution, sa.Integer), _SER.c.metric, _SER.c.host_id, _SER.c.env_id, _SER.c.gpu_uuid, bucket,
            sa.func.max(_SER.c.workspace_id), sa.func.count(), sa.func.sum(_P.c.value), sa.func.min(_P.c.value),
            sa.func.max(_P.c.value),
        ).select_from(_P.join(_SER, _SER.c.id == _P.c.series_id)).where(_P.c.ts >= lo, _P.c.ts < hi).group_by(
            _SER.c.metric, _SER.c.host_id, _SER.c.env_id, _SER.c.gpu_uuid, bucket)

    async def _replace_buckets(self, session: AsyncSession, resolution: int, postgres: bool, lo: float, hi: float) -> None:
        await session.execute(sa.delete(_R).where(_R.c.resolution == resolution, _R.c.bucket >= lo, _R.c.bucket < hi))
        await session.execute(_R.insert().from_select(
            ["resolution", "metric", "host_id", "env_id", "gpu_uuid", "bucket", "workspace_id", "count", "sum", "min", "max"],
            self._rollup_select(resolution, postgres, lo, hi)))

    async def _recompute_late(self, now: float, batch: int = 200) -> bool:
        """Recompute up to ``batch`` buckets late samples fell into; True when more are marked."""
        async with self._sessions() as session, session.begin():
            postgres = await self._exclusive(session)
            marks = (await session.execute(sa.select(_L.c.resolution, _L.c.bucket)
                                           .order_by(_L.c.resolution, _L.c.bucket).limit(batch))).all()
            for resolution, bucket in marks:
                # Raw still covers the whole bucket (a late sample is at most an hour old,
                # raw is kept a day): replace it. Past raw retention, keep what was rolled up.
                if bucket >= now - self.retention.raw_seconds:
                    await self._replace_buckets(session, resolution, postgres, bucket, bucket + resolution)
                await session.execute(sa.delete(_L).where(_L.c.resolution == resolution, _L.c.bucket == bucket))
            return len(marks) == batch

    async def _compact_chunk(self, resolution: int, now: float) -> bool:
        """Roll up one chunk of finished buckets; True when more may be due."""
        target = bucket_of(now - ROLLUP_GRACE_SECONDS, resolution)
        async with self._sessions() as session, session.begin():
            postgres = await self._exclusive(session)
            # Both dialects know ON CONFLICT DO NOTHING; on SQLite this also takes the write lock.
            await session.execute(
                sa.text("INSERT INTO metric_compaction (resolution, done_until) VALUES (:r, 0) ON CONFLICT DO NOTHING"),
                {"r": resolution})
            done = (await session.execute(sa.select(_W.c.done_until).where(_W.c.resolution == resolution)
                                          .with_for_update())).scalar_one()
            if done == 0 or done < now - self.retention.raw_seconds - resolution:
                # First run, or idle past retention: skip to the oldest raw sample left.
                oldest = (await session.execute(sa.select(sa.func.min(_P.c.ts)))).scalar()
                if oldest is None:
                    await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=target))
                    return False
                done = max(done, bucket_of(oldest, resolution))  # never back: a watermark only moves on
            if done >= target:
                await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=done))
                return False
            stop = min(target, done + max(resolution, COMPACT_CHUNK_SECONDS // resolution * resolution))
            await self._replace_buckets(session, resolution, postgres, done, stop)
            await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=stop))
            return stop < target


_POINT_COLUMNS = ["series_id", "ts", "value"]


def _pg_rollup_query(resolution: int, flt: SeriesFilter, metric: str, origin: float, lo: float, hi: float,
                     step: int) -> tuple[Any, ...]:
    """``SqlMetricsStore._query`` over a rollup tier for asyncpg: (SQL, *arguments). Buckets
    are whole seconds, so ``bucket < hi`` is ``bucket < ceil(hi)`` (an integer bound keeps
    both ends of the index range); ordered by step only (no sort on text columns)."""
    args: list[Any] = [int(origin), int(step), resolution, metric, int(lo), math.ceil(hi)]
    where = ""
    for column in ("env_id", "host_id", "workspace_id", "gpu_uuid"):
        value = getattr(flt, column)
        if value is not None:
            args.append(value)
            where += f" AND {column} = ${len(args)}"
    return ("SELECT host_id, env_id, gpu_uuid, max(workspace_id), (bucket - $1::bigint) / $2::bigint AS k, sum(count), "
            "sum(sum), min(min), max(max) FROM metric_rollups "
            f"WHERE resolution = $3 AND metric = $4 AND bucket >= $5::bigint AND bucket < $6::bigint{where} "
            "GROUP BY 1, 2, 3, 5 ORDER BY 5", *args)
#: A batch in one call (migration 0039): series numbers, timestamps, values, distinct timestamps.
_PG_WRITE = "SELECT metric_points_write($1::int[], $2::float8[], $3::float8[], $4::float8[])"
