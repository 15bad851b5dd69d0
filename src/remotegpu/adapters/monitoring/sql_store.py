"""MetricsStore in the database (SQLite or PostgreSQL): the embedded default.

Raw samples go to ``metric_samples``; ``compact`` rolls finished buckets up into
``metric_rollups`` (1 minute and 1 hour, aggregated by the database: count, sum, min,
max) and deletes what is past retention. A watermark per resolution
(``metric_compaction``) records how far it got; the row is locked while a replica
compacts (PostgreSQL ``FOR UPDATE``; SQLite serialises writers), and a bucket is
replaced as a whole, so compaction is idempotent and safe on every replica.

Range queries read the finest resolution still kept for their start (raw for the last
24 h) and group into steps in the database.
"""

from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.application.monitoring.ports import Point, Series, SeriesFilter
from remotegpu.domain.monitoring.metrics import ROLLUP_GRACE_SECONDS, ROLLUP_RESOLUTIONS, Retention, Sample, bucket_of

_S, _R, _W = t.metric_samples, t.metric_rollups, t.metric_compaction
#: Rolled up at most this much raw time per transaction (seconds).
COMPACT_CHUNK_SECONDS = 3600


class SqlMetricsStore:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], *, retention: Retention | None = None) -> None:
        self._sessions = session_factory
        self.retention = retention or Retention()
        self._engine: AsyncEngine | None = None

    def _dialect(self, session: AsyncSession) -> str:
        return session.get_bind().dialect.name

    # --- write ----------------------------------------------------------------------

    async def write(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        async with self._sessions() as session, session.begin():
            if self._dialect(session) == "postgresql":
                await _copy_rows(session, [(s.ts, s.metric, s.host_id, s.env_id, s.workspace_id, s.gpu_uuid, s.value)
                                           for s in samples])
            else:
                await session.execute(_S.insert(), [
                    {"ts": s.ts, "metric": s.metric, "host_id": s.host_id, "env_id": s.env_id,
                     "workspace_id": s.workspace_id, "gpu_uuid": s.gpu_uuid, "value": s.value} for s in samples])

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
        cond = [_S.c.ts >= since, *self._where(_S, flt)]
        if metrics:
            cond.append(_S.c.metric.in_(list(metrics)))
        keys = [_S.c.metric, _S.c.host_id, _S.c.env_id, _S.c.gpu_uuid]
        newest = sa.select(*keys, sa.func.max(_S.c.ts).label("ts")).where(*cond).group_by(*keys).subquery()
        s2 = _S.alias("s2")
        query = sa.select(s2).join(newest, sa.and_(
            s2.c.metric == newest.c.metric, s2.c.host_id == newest.c.host_id, s2.c.env_id == newest.c.env_id,
            s2.c.gpu_uuid == newest.c.gpu_uuid, s2.c.ts == newest.c.ts))
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
        # A step of whole hours inside the year kept: the hourly aggregates answer the same
        # (exact) values from 60× fewer rows, up to where they have been rolled up; the
        # finer resolution answers the rest. Whole minutes: the same with the minutes.
        for coarse in (3600, 60):
            if resolution < coarse and step % coarse == 0 and start >= now - self._kept(coarse):
                async with self._sessions() as session:
                    done = (await session.execute(sa.select(_W.c.done_until).where(_W.c.resolution == coarse))).scalar()
                aligned = float(bucket_of(start, coarse))
                cut = aligned + max(0, (min(end, done or 0) - aligned) // step) * step
                if cut > aligned:
                    origin = aligned
                    parts = [(coarse, origin, cut)] + ([(resolution, cut, end)] if cut < end else [])
                break
        series: dict[tuple, Series] = {}
        async with self._sessions() as session:
            for res, lo, hi in parts:
                for r in await self._query(session, res, flt, metric, origin, lo, hi, step):
                    key = (r.host_id, r.env_id, r.gpu_uuid)
                    s = series.get(key)
                    if s is None:
                        s = series[key] = Series(metric, r.host_id, r.env_id, r.ws or "", r.gpu_uuid)
                    n = int(r.n)
                    s.points.append(Point(origin + int(r.k) * step, float(r.total) / n, float(r.lo), float(r.hi), n))
        return list(series.values())

    def _kept(self, resolution: int) -> int:
        return self.retention.hour_seconds if resolution == 3600 else self.retention.minute_seconds

    async def _query(self, session: AsyncSession, resolution: int, flt: SeriesFilter, metric: str, origin: float,
                     lo: float, hi: float, step: int) -> list[Any]:
        """Steps of ``step`` seconds from ``origin`` over [lo, hi), from raw (0) or a rollup resolution."""
        floor = sa.func.floor if self._dialect(session) == "postgresql" else (lambda x: sa.cast(x, sa.Integer))
        o, st = sa.literal(origin, sa.Float(53)), sa.literal(float(step), sa.Float(53))
        if resolution == 0:
            query = sa.select(
                _S.c.host_id, _S.c.env_id, _S.c.gpu_uuid, sa.func.max(_S.c.workspace_id).label("ws"),
                floor((_S.c.ts - o) / st).label("k"), sa.func.count().label("n"), sa.func.sum(_S.c.value).label("total"),
                sa.func.min(_S.c.value).label("lo"), sa.func.max(_S.c.value).label("hi"),
            ).where(_S.c.metric == metric, _S.c.ts >= lo, _S.c.ts < hi, *self._where(_S, flt))
        else:
            query = sa.select(
                _R.c.host_id, _R.c.env_id, _R.c.gpu_uuid, sa.func.max(_R.c.workspace_id).label("ws"),
                floor((_R.c.bucket - o) / st).label("k"), sa.func.sum(_R.c.count).label("n"),
                sa.func.sum(_R.c.sum).label("total"), sa.func.min(_R.c.min).label("lo"), sa.func.max(_R.c.max).label("hi"),
            ).where(_R.c.resolution == resolution, _R.c.metric == metric, _R.c.bucket >= lo, _R.c.bucket < hi,
                    *self._where(_R, flt))
        query = query.group_by(sa.text("1"), sa.text("2"), sa.text("3"), sa.text("5")).order_by(
            sa.text("1"), sa.text("2"), sa.text("3"), sa.text("5"))
        return (await session.execute(query)).all()

    # --- compaction -----------------------------------------------------------------

    async def compact(self, now: float) -> None:
        for resolution in ROLLUP_RESOLUTIONS:
            while await self._compact_chunk(resolution, now):
                pass
        r = self.retention
        async with self._sessions() as session, session.begin():
            await session.execute(sa.delete(_S).where(_S.c.ts < now - r.raw_seconds))
            await session.execute(sa.delete(_R).where(_R.c.resolution == 60, _R.c.bucket < now - r.minute_seconds))
            await session.execute(sa.delete(_R).where(_R.c.resolution == 3600, _R.c.bucket < now - r.hour_seconds))

    async def _compact_chunk(self, resolution: int, now: float) -> bool:
        """Roll up one chunk of finished buckets; True when more may be due."""
        target = bucket_of(now - ROLLUP_GRACE_SECONDS, resolution)
        async with self._sessions() as session, session.begin():
            postgres = self._dialect(session) == "postgresql"
            if postgres:
                await session.execute(
                    sa.text("INSERT INTO metric_compaction (resolution, done_until) VALUES (:r, 0) ON CONFLICT DO NOTHING"),
                    {"r": resolution})
                done = (await session.execute(sa.select(_W.c.done_until).where(_W.c.resolution == resolution)
                                              .with_for_update())).scalar_one()
            else:
                done = (await session.execute(sa.select(_W.c.done_until).where(_W.c.resolution == resolution))).scalar()
                if done is None:
                    await session.execute(_W.insert().values(resolution=resolution, done_until=0))
                    done = 0
            if done == 0 or done < now - self.retention.raw_seconds - resolution:
                # First run, or idle past retention: skip to the oldest raw sample left.
                oldest = (await session.execute(sa.select(sa.func.min(_S.c.ts)))).scalar()
                if oldest is None:
                    await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=target))
                    return False
                done = max(done, bucket_of(oldest, resolution))  # never back: a watermark only moves on
            if done >= target:
                await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=done))
                return False
            stop = min(target, done + max(resolution, COMPACT_CHUNK_SECONDS // resolution * resolution))
            floor = sa.func.floor if postgres else (lambda x: sa.cast(x, sa.Integer))
            bucket = (sa.cast(floor(_S.c.ts / resolution), sa.BigInteger) * resolution)
            select = sa.select(
                sa.literal(resolution, sa.Integer), _S.c.metric, _S.c.host_id, _S.c.env_id, _S.c.gpu_uuid, bucket,
                sa.func.max(_S.c.workspace_id), sa.func.count(), sa.func.sum(_S.c.value), sa.func.min(_S.c.value),
                sa.func.max(_S.c.value),
            ).where(_S.c.ts >= done, _S.c.ts < stop).group_by(
                _S.c.metric, _S.c.host_id, _S.c.env_id, _S.c.gpu_uuid, bucket)
            await session.execute(sa.delete(_R).where(_R.c.resolution == resolution, _R.c.bucket >= done, _R.c.bucket < stop))
            await session.execute(_R.insert().from_select(
                ["resolution", "metric", "host_id", "env_id", "gpu_uuid", "bucket", "workspace_id", "count", "sum", "min", "max"],
                select))
            await session.execute(_W.update().where(_W.c.resolution == resolution).values(done_until=stop))
            return stop < target


_COLUMNS = ["ts", "metric", "host_id", "env_id", "workspace_id", "gpu_uuid", "value"]


async def _copy_rows(session: AsyncSession, records: list[tuple]) -> None:
    """PostgreSQL: COPY the rows in (asyncpg's binary copy), far faster than INSERTs."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table("metric_samples", records=records, columns=_COLUMNS)
