"""Billing in SQL (SQLite or PostgreSQL): prices, readings, segments, ledger, wallets, bills."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.application.billing.service import lines_from_json, lines_json
from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import Reading, Segment
from remotegpu.domain.billing.models import Bill, BillLine, RatedSegment, Wallet
from remotegpu.domain.billing.plans import Plan, PlanTerm
from remotegpu.domain.billing.prices import Price, ResourceKind
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.shared.ids import new_id

#: pg_advisory_xact_lock key of the metering pass ("RGPUBILL").
METERING_LOCK_KEY = 0x5247505542494C4C
_P, _R, _M, _S, _L, _W, _B = (t.billing_prices, t.meter_readings, t.meters, t.usage_segments, t.ledger_entries, t.wallets, t.bills)
_PL = t.billing_plans
_IN_CHUNK = 500
#: Segments upserted by key, set-based: one statement per batch, the rows as arrays (unnest).
_PG_UPSERT_UNNEST = """
    INSERT INTO usage_segments (key, environment_id, workspace_id, owner_id, kind, model, quantity, start_at, end_at, price_id,
                                unit_price, period, rated_until, amount, charged)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                         $8::timestamptz[], $9::timestamptz[], $10::text[], $11::bigint[], $12::text[], $13::timestamptz[],
                         $14::bigint[], $15::bigint[])
    ON CONFLICT (key) DO UPDATE SET quantity = excluded.quantity, end_at = excluded.end_at, price_id = excluded.price_id,
        unit_price = excluded.unit_price, period = excluded.period, rated_until = excluded.rated_until,
        amount = excluded.amount, charged = excluded.charged"""
_SEGMENT_COLUMNS = ["key", "environment_id", "workspace_id", "owner_id", "kind", "model", "quantity", "start_at", "end_at",
                    "price_id", "unit_price", "period", "rated_until", "amount", "charged"]
_PG_READINGS = """
    SELECT environment_id, workspace_id, owner_id, at, status, gpu_model, gpu_count, with_gpu, cpu_cores, memory_gib,
           disk_gib, n
    FROM meter_readings WHERE environment_id = ANY($1::text[])"""
_PG_SEGMENTS = """
    SELECT key, environment_id, workspace_id, owner_id, kind, model, quantity, start_at, end_at, price_id, unit_price,
           rated_until, amount, charged
    FROM usage_segments WHERE environment_id = ANY($1::text[])"""
_SQLITE_LOCKS: dict[int, asyncio.Lock] = {}


def _insert(session: AsyncSession, table: sa.Table):
    return (postgresql.insert(table) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(table))


async def add_readings(session: AsyncSession, readings: list[Reading]) -> None:
    """Readings and their meters' versions, in the caller's transaction (SqlUnitOfWork.meter_readings)."""
    if not readings:
        return
    await session.execute(_R.insert(), [
        dict(id=new_id(), environment_id=r.environment_id, workspace_id=r.workspace_id, owner_id=r.owner_id, at=r.at, n=r.seq,
             status=r.status, gpu_model=r.gpu_model, gpu_count=r.gpu_count, with_gpu=r.with_gpu, cpu_cores=r.cpu_cores,
             memory_gib=r.memory_gib, disk_gib=r.disk_gib)
        for r in readings
    ])
    meters = sorted({(r.environment_id, r.workspace_id) for r in readings})
    for i in range(0, len(meters), _IN_CHUNK):  # one statement per chunk (each meter once: version + 1)
        stmt = _insert(session, _M).values([dict(environment_id=env_id, workspace_id=ws, version=1, metered_version=0,
                                                 open_segments=0) for env_id, ws in meters[i:i + _IN_CHUNK]])
        await session.execute(stmt.on_conflict_do_update(index_elements=[_M.c.environment_id],
                                                         set_={"version": _M.c.version + 1}))


class SqlMeterReadings:
    """``uow.meter_readings`` of the SQL unit of work: readings in the state change's transaction."""

    def __init__(self, session: AsyncSession):
        self._session = session

    async def add(self, readings: list[Reading]) -> None:
        await add_readings(self._session, readings)


def _price(r: Any) -> Price:
    return Price(r.id, ResourceKind(r.kind), r.model, r.unit_price, r.effective_from, r.created_by)


def _reading(r: Any) -> Reading:
    return Reading(r.environment_id, r.workspace_id, r.owner_id, r.at, r.status, r.gpu_model, r.gpu_count, r.with_gpu,
                   r.cpu_cores, r.memory_gib, r.disk_gib, r.n)


def _rated(r: Any) -> RatedSegment:
    g = Segment(r.key, r.environment_id, r.workspace_id, r.owner_id, ResourceKind(r.kind), r.model, r.quantity,
                r.start_at, r.end_at, r.price_id, r.unit_price)
    return RatedSegment(g, r.rated_until, r.amount, r.charged)


def segment_row(rs: RatedSegment) -> dict[str, Any]:
    g = rs.segment
    return dict(key=g.key, environment_id=g.environment_id, workspace_id=g.workspace_id, owner_id=g.owner_id, kind=g.kind.value,
                model=g.model, quantity=g.quantity, start_at=g.start, end_at=g.end, price_id=g.price_id, unit_price=g.unit_price,
                period=rs.period, rated_until=rs.rated_until, amount=rs.amount, charged=rs.charged)


def _entry(r: Any) -> LedgerEntry:
    return LedgerEntry(r.id, r.workspace_id, EntryKind(r.kind), r.amount, r.at, r.reason, r.actor_id, r.reference, r.period, r.expires_at)


def entry_row(e: LedgerEntry) -> dict[str, Any]:
    return dict(id=e.id, workspace_id=e.workspace_id, kind=e.kind.value, amount=e.amount, at=e.at, reason=e.reason,
                actor_id=e.actor_id, reference=e.reference, period=e.period, expires_at=e.expires_at)


def _plan(r: Any) -> Plan:
    return Plan(r.id, r.workspace_id, r.gpu_model, r.gpu_count, PlanTerm(r.term), r.price, r.starts_at, r.ends_at,
                r.term_started_at, r.auto_renew, r.status, r.created_by, r.terms)


def plan_row(p: Plan) -> dict[str, Any]:
    return dict(id=p.id, workspace_id=p.workspace_id, gpu_model=p.gpu_model, gpu_count=p.gpu_count, term=p.term.value,
                price=p.price, starts_at=p.starts_at, ends_at=p.ends_at, term_started_at=p.term_started_at,
                auto_renew=p.auto_renew, status=p.status, created_by=p.created_by, terms=p.terms)


def _wallet(r: Any) -> Wallet:
    return Wallet(r.workspace_id, r.warn_below, r.warned, r.arrears_since, r.disk_warnings, r.budget_monthly,
                  r.budget_hard_stop, r.budget_notified)


class SqlBillingTx:
    def __init__(self, session: AsyncSession):
        self.s = session
        self._sqlite_lock: asyncio.Lock | None = None

    @property
    def _pg(self) -> bool:
        return self.s.get_bind().dialect.name == "postgresql"

    async def lock(self) -> None:
        if self._pg:
            await self.s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": METERING_LOCK_KEY})
        else:
            lock = _SQLITE_LOCKS.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
            await lock.acquire()
            self._sqlite_lock = lock

    def release(self) -> None:
        if self._sqlite_lock is not None:
            self._sqlite_lock.release()
            self._sqlite_lock = None

    async def prices(self) -> list[Price]:
        return [_price(r) for r in await self.s.execute(sa.select(_P))]

    async def add_price(self, price: Price) -> None:
        await self.s.execute(_P.insert().values(id=price.id, kind=price.kind.value, model=price.model, unit_price=price.unit_price,
                                                effective_from=price.effective_from, created_by=price.created_by,
                                                created_at=price.effective_from))

    async def add_readings(self, readings: list[Reading]) -> None:
        await add_readings(self.s, readings)

    async def to_meter(self) -> list[tuple[str, int, bool]]:
        rows = await self.s.execute(sa.select(_M.c.environment_id, _M.c.version, _M.c.metered_version).where(
            sa.or_(_M.c.version > _M.c.metered_version, _M.c.open_segments > 0)).order_by(_M.c.environment_id))
        return [(r.environment_id, r.version, r.version > r.metered_version) for r in rows]

    async def open_segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]:
        out: dict[str, list[RatedSegment]] = {}
        for i in range(0, len(environment_ids), _IN_CHUNK):
            rows = await self.s.execute(sa.select(_S).where(_S.c.environment_id.in_(environment_ids[i:i + _IN_CHUNK]),
                                                            _S.c.end_at.is_(None)))
            for r in rows:
                out.setdefault(r.environment_id, []).append(_rated(r))
        return out

    async def readings(self, environment_ids: list[str]) -> dict[str, list[Reading]]:
        out: dict[str, list[Reading]] = {}
        if self._pg:  # one round trip, no per-row processing by SQLAlchemy
            for r in await (await self._raw()).fetch(_PG_READINGS, environment_ids):
                reading = Reading(*r)
                out.setdefault(reading.environment_id, []).append(reading)
            return out
        for i in range(0, len(environment_ids), _IN_CHUNK):
            rows = await self.s.execute(sa.select(_R).where(_R.c.environment_id.in_(environment_ids[i:i + _IN_CHUNK])))
            for r in rows:
                out.setdefault(r.environment_id, []).append(_reading(r))
        return out

    async def segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]:
        out: dict[str, list[RatedSegment]] = {}
        if self._pg:
            for r in await (await self._raw()).fetch(_PG_SEGMENTS, environment_ids):
                g = Segment(r[0], r[1], r[2], r[3], ResourceKind(r[4]), r[5], r[6], r[7], r[8], r[9], r[10])
                out.setdefault(g.environment_id, []).append(RatedSegment(g, r[11], r[12], r[13]))
            return out
        for i in range(0, len(environment_ids), _IN_CHUNK):
            rows = await self.s.execute(sa.select(_S).where(_S.c.environment_id.in_(environment_ids[i:i + _IN_CHUNK])))
            for r in rows:
                out.setdefault(r.environment_id, []).append(_rated(r))
        return out

    async def _raw(self):
        """The asyncpg connection under this transaction (PostgreSQL bulk writes skip SQLAlchemy's
        per-row parameter processing: a third of a metering pass's time)."""
        connection = await self.s.connection()
        return (await connection.get_raw_connection()).driver_connection

    async def save_segments(self, upserts: list[RatedSegment], deleted_keys: list[str],
                            new_keys: frozenset[str] = frozenset()) -> None:
        if deleted_keys:
            await self.s.execute(_S.delete().where(_S.c.key.in_(deleted_keys)))
        if not upserts:
            return
        if self._pg:
            raw = await self._raw()
            rows = [(g.key, g.environment_id, g.workspace_id, g.owner_id, g.kind.value, g.model, g.quantity, g.start, g.end,
                     g.price_id, g.unit_price, rs.period, rs.rated_until, rs.amount, rs.charged)
                    for rs in upserts for g in (rs.segment,)]
            fresh = [r for r in rows if r[0] in new_keys]
            if fresh:
                # Known not to be stored (the metering lock is held): a binary COPY, no
                # conflict check and no per-element array encoding (most of a first pass).
                await raw.copy_records_to_table("usage_segments", records=fresh, columns=_SEGMENT_COLUMNS)
                rows = [r for r in rows if r[0] not in new_keys]
            if rows:
                await raw.execute(_PG_UPSERT_UNNEST, *map(list, zip(*rows)))  # columns as arrays: one statement
            return
        stmt = _insert(self.s, _S)
        stmt = stmt.on_conflict_do_update(index_elements=[_S.c.key], set_={
            c: stmt.excluded[c] for c in ("quantity", "end_at", "price_id", "unit_price", "period", "rated_until", "amount", "charged")
        })
        await self.s.execute(stmt, [segment_row(rs) for rs in upserts])

    async def rate_open(self, rated: list[RatedSegment]) -> None:
        """Open segments re-rated to a later instant: only rated_until, amount and charged move."""
        if not rated:
            return
        if self._pg:
            raw = await self._raw()
            await raw.execute("UPDATE usage_segments s SET rated_until = u.t, amount = u.a, charged = u.c "
                              "FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[]) AS u(k, t, a, c) "
                              "WHERE s.key = u.k",
                              [rs.segment.key for rs in rated], [rs.rated_until for rs in rated], [rs.amount for rs in rated],
                              [rs.charged for rs in rated])
            return
        await self.s.execute(
            _S.update().where(_S.c.key == sa.bindparam("k")).values(
                rated_until=sa.bindparam("u"), amount=sa.bindparam("a"), charged=sa.bindparam("c")),
            [{"k": rs.segment.key, "u": rs.rated_until, "a": rs.amount, "c": rs.charged} for rs in rated],
        )

    async def rate_open_in_database(self, now: datetime, month_start: datetime) -> dict[tuple[str, str], tuple[int, int]] | None:
        """PostgreSQL, the minute tick in one statement: every open segment of an environment
        with no new reading is re-rated to ``now`` — unless a month start, a price change or a
        plan boundary of its resource falls since it began (those stay for the full path).
        Answers (charge delta, segments) by (workspace, period); None elsewhere."""
        if not self._pg:
            return None
        rows = await self.s.execute(sa.text("""
            WITH todo AS (
                SELECT seg.key, seg.workspace_id, seg.period, seg.charged,
                       (2 * seg.quantity * seg.unit_price * floor(extract(epoch FROM (:now - seg.start_at)))::bigint
                        + CASE WHEN seg.kind = 'disk' THEN 86400 ELSE 3600 END)
                       / (2 * CASE WHEN seg.kind = 'disk' THEN 86400 ELSE 3600 END) AS amount
                FROM usage_segments seg JOIN meters m ON m.environment_id = seg.environment_id
                WHERE seg.end_at IS NULL AND seg.rated_until <> :now AND m.version = m.metered_version
                  AND seg.start_at >= :month_start
                  AND NOT EXISTS (SELECT 1 FROM billing_prices p WHERE p.kind = seg.kind AND p.model = seg.model
                                  AND p.effective_from > seg.start_at AND p.effective_from <= :now)
                  AND (seg.kind <> 'gpu' OR NOT EXISTS (
                        SELECT 1 FROM billing_plans pl WHERE pl.workspace_id = seg.workspace_id AND pl.gpu_model = seg.model
                        AND ((pl.starts_at > seg.start_at AND pl.starts_at <= :now)
                             OR (pl.ends_at > seg.start_at AND pl.ends_at <= :now))))
            ), done AS (
                UPDATE usage_segments u SET rated_until = :now, amount = todo.amount, charged = todo.amount
                FROM todo WHERE u.key = todo.key
                RETURNING todo.workspace_id, todo.period, todo.amount - todo.charged AS delta
            )
            SELECT workspace_id, period, sum(delta), count(*) FROM done GROUP BY workspace_id, period
        """), {"now": now, "month_start": month_start})
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}

    async def not_rated_since(self, environment_ids: list[str], now: datetime) -> list[str]:
        """Of these environments, those with an open segment not rated to ``now``."""
        out: list[str] = []
        if self._pg and len(environment_ids) > _IN_CHUNK:
            # Many (the minute tick's clean environments): one pass over the open segments, not a query per chunk.
            wanted = set(environment_ids)
            rows = await (await self._raw()).fetch(
                "SELECT DISTINCT environment_id FROM usage_segments WHERE end_at IS NULL AND rated_until <> $1", now)
            return [r[0] for r in rows if r[0] in wanted]
        for i in range(0, len(environment_ids), _IN_CHUNK):
            rows = await self.s.execute(sa.select(_S.c.environment_id).where(
                _S.c.environment_id.in_(environment_ids[i:i + _IN_CHUNK]), _S.c.end_at.is_(None),
                _S.c.rated_until != now).distinct())
            out.extend(r[0] for r in rows)
        return out

    async def mark_metered(self, marks: list[tuple[str, int, int]]) -> None:
        if not marks:
            return
        if self._pg:
            raw = await self._raw()
            await raw.execute("UPDATE meters m SET metered_version = u.v, open_segments = u.o "
                              "FROM unnest($1::text[], $2::int[], $3::int[]) AS u(e, v, o) WHERE m.environment_id = u.e",
                              *map(list, zip(*marks)))
            return
        await self.s.execute(
            _M.update().where(_M.c.environment_id == sa.bindparam("e")).values(
                metered_version=sa.bindparam("v"), open_segments=sa.bindparam("o")),
            [{"e": e, "v": v, "o": o} for e, v, o in marks],
        )

    async def add_entries(self, entries: list[LedgerEntry]) -> None:
        if entries:
            try:
                async with self.s.begin_nested():
                    await self.s.execute(_L.insert(), [entry_row(e) for e in entries])
            except IntegrityError:
                raise Conflict("a ledger entry with this reference exists", code="duplicate_reference") from None

    async def has_reference(self, reference: str) -> bool:
        return (await self.s.execute(sa.select(_L.c.id).where(_L.c.reference == reference))).first() is not None

    async def balance(self, workspace_id: str) -> int:
        return int((await self.s.execute(sa.select(sa.func.coalesce(sa.func.sum(_L.c.amount), 0)).where(
            _L.c.workspace_id == workspace_id))).scalar_one())

    async def balances(self, workspace_ids: list[str] | None = None) -> dict[str, int]:
        q = sa.select(_L.c.workspace_id, sa.func.sum(_L.c.amount)).group_by(_L.c.workspace_id)
        out = {r[0]: int(r[1]) for r in await self.s.execute(q)}
        for (ws,) in await self.s.execute(sa.select(_W.c.workspace_id)):
            out.setdefault(ws, 0)
        if workspace_ids is not None:
            return {ws: out.get(ws, 0) for ws in workspace_ids}
        return out

    async def entries(self, workspace_id: str, *, limit: int, offset: int) -> tuple[list[LedgerEntry], int]:
        where = _L.c.workspace_id == workspace_id
        total = (await self.s.execute(sa.select(sa.func.count()).select_from(_L).where(where))).scalar_one()
        rows = await self.s.execute(sa.select(_L).where(where).order_by(_L.c.at.desc(), _L.c.id).limit(limit).offset(offset))
        return [_entry(r) for r in rows], int(total)

    async def all_entries(self, workspace_id: str) -> list[LedgerEntry]:
        return [_entry(r) for r in await self.s.execute(sa.select(_L).where(_L.c.workspace_id == workspace_id).order_by(_L.c.at))]

    async def period_charges(self, workspace_id: str, period: str) -> int:
        return int((await self.s.execute(sa.select(sa.func.coalesce(sa.func.sum(_L.c.amount), 0)).where(
            _L.c.workspace_id == workspace_id, _L.c.period == period, _L.c.kind == EntryKind.CHARGE.value))).scalar_one())

    async def period_entries(self, workspace_id: str, period: str, kinds: tuple[EntryKind, ...]) -> list[LedgerEntry]:
        rows = await self.s.execute(sa.select(_L).where(
            _L.c.workspace_id == workspace_id, _L.c.period == period, _L.c.kind.in_([k.value for k in kinds])
        ).order_by(_L.c.at, _L.c.id))
        return [_entry(r) for r in rows]

    async def wallet(self, workspace_id: str) -> Wallet:
        r = (await self.s.execute(sa.select(_W).where(_W.c.workspace_id == workspace_id))).first()
        return _wallet(r) if r is not None else Wallet(workspace_id)

    async def wallets(self) -> list[Wallet]:
        return [_wallet(r) for r in await self.s.execute(sa.select(_W))]

    async def save_wallet(self, w: Wallet) -> None:
        values = dict(warn_below=w.warn_below, warned=w.warned, arrears_since=w.arrears_since, disk_warnings=w.disk_warnings,
                      budget_monthly=w.budget_monthly, budget_hard_stop=w.budget_hard_stop, budget_notified=w.budget_notified)
        stmt = _insert(self.s, _W).values(workspace_id=w.workspace_id, **values)
        await self.s.execute(stmt.on_conflict_do_update(index_elements=[_W.c.workspace_id], set_=values))

    async def usage(self, workspace_id: str, start: datetime, end: datetime) -> list[RatedSegment]:
        rows = await self.s.execute(sa.select(_S).where(_S.c.workspace_id == workspace_id, _S.c.start_at >= start, _S.c.start_at < end))
        return [_rated(r) for r in rows]

    async def period_segments(self, workspace_id: str, period: str) -> list[RatedSegment]:
        rows = await self.s.execute(sa.select(_S).where(_S.c.workspace_id == workspace_id, _S.c.period == period))
        return [_rated(r) for r in rows]

    async def bill(self, workspace_id: str, period: str) -> Bill | None:
        r = (await self.s.execute(sa.select(_B).where(_B.c.workspace_id == workspace_id, _B.c.period == period))).first()
        if r is None:
            return None
        return Bill(r.workspace_id, r.period, "finalized", r.total, r.total, lines_from_json(r.lines), r.finalized_at)

    async def add_bill(self, bill: Bill) -> None:
        await self.s.execute(_B.insert().values(workspace_id=bill.workspace_id, period=bill.period, total=bill.total,
                                                lines=lines_json(bill.lines), finalized_at=bill.finalized_at))

    # --- bills of a whole month at once (set-based: 1,000,000 segments in seconds) -------------
    def _seconds(self):
        end = sa.func.coalesce(_S.c.end_at, _S.c.rated_until)
        if self._pg:
            return sa.func.sum(sa.cast(sa.extract("epoch", end - _S.c.start_at), sa.BigInteger))
        return sa.func.sum(sa.cast(sa.func.round((sa.func.julianday(end) - sa.func.julianday(_S.c.start_at)) * 86400), sa.BigInteger))

    async def period_lines(self, period: str) -> dict[str, list[BillLine]]:
        cols = (_S.c.workspace_id, _S.c.environment_id, _S.c.kind, _S.c.model, _S.c.quantity, _S.c.unit_price)
        q = sa.select(*cols, self._seconds().label("seconds"), sa.func.sum(_S.c.amount).label("amount")).where(
            _S.c.period == period).group_by(*cols).order_by(*cols[:4])
        out: dict[str, list[BillLine]] = {}
        for r in await self.s.execute(q):
            out.setdefault(r.workspace_id, []).append(
                BillLine(r.environment_id, r.kind, r.model, r.quantity, r.unit_price, int(r.seconds or 0), int(r.amount)))
        return out

    async def period_charges_all(self, period: str) -> dict[str, int]:
        q = sa.select(_L.c.workspace_id, sa.func.sum(_L.c.amount)).where(
            _L.c.period == period, _L.c.kind == EntryKind.CHARGE.value).group_by(_L.c.workspace_id)
        return {r[0]: int(r[1]) for r in await self.s.execute(q)}

    async def open_workspaces(self, period: str) -> set[str]:
        q = sa.select(_S.c.workspace_id).where(_S.c.period == period, _S.c.end_at.is_(None)).distinct()
        return {r[0] for r in await self.s.execute(q)}

    async def finalized(self, period: str) -> set[str]:
        return {r[0] for r in await self.s.execute(sa.select(_B.c.workspace_id).where(_B.c.period == period))}

    async def finalize_in_database(self, period: str, now: datetime) -> int | None:
        """PostgreSQL: the month's bills in one INSERT … SELECT (lines aggregated to JSON by the
        database, the same checks as ``BillingService.finalize``). None elsewhere: do it in Python."""
        if not self._pg:
            return None
        result = await self.s.execute(sa.text("""
            INSERT INTO bills (workspace_id, period, total, lines, finalized_at)
            SELECT l.workspace_id, :period, sum(l.amount),
                   json_agg(json_build_object('environment_id', l.environment_id, 'kind', l.kind, 'model', l.model,
                                              'quantity', l.quantity, 'unit_price', l.unit_price, 'seconds', l.seconds,
                                              'amount', l.amount)
                            ORDER BY l.environment_id, l.kind, l.model, l.quantity, l.unit_price)::text, :now
            FROM (SELECT workspace_id, environment_id, kind, model, quantity, unit_price,
                         sum(extract(epoch FROM coalesce(end_at, rated_until) - start_at))::bigint AS seconds,
                         sum(amount) AS amount
                  FROM usage_segments WHERE period = :period
                  GROUP BY workspace_id, environment_id, kind, model, quantity, unit_price) AS l
            LEFT JOIN (SELECT workspace_id, sum(amount) AS charged FROM ledger_entries
                       WHERE period = :period AND kind = 'charge' GROUP BY workspace_id) AS c USING (workspace_id)
            WHERE NOT EXISTS (SELECT 1 FROM usage_segments o WHERE o.workspace_id = l.workspace_id AND o.period = :period
                                                              AND o.end_at IS NULL)
              AND NOT EXISTS (SELECT 1 FROM bills b WHERE b.workspace_id = l.workspace_id AND b.period = :period)
            GROUP BY l.workspace_id
            HAVING sum(l.amount) = -coalesce(max(c.charged), 0)
        """), {"period": period, "now": now})
        return int(result.rowcount or 0)

    async def add_bills(self, bills: list[Bill]) -> None:
        if bills:
            await self.s.execute(_B.insert(), [dict(workspace_id=b.workspace_id, period=b.period, total=b.total,
                                                    lines=lines_json(b.lines), finalized_at=b.finalized_at) for b in bills])

    # --- plans ---------------------------------------------------------------------------
    async def plans(self, workspace_id: str | None = None) -> list[Plan]:
        q = sa.select(_PL)
        if workspace_id is not None:
            q = q.where(_PL.c.workspace_id == workspace_id)
        return [_plan(r) for r in await self.s.execute(q.order_by(_PL.c.starts_at, _PL.c.id))]

    async def save_plan(self, plan: Plan) -> None:
        values = plan_row(plan)
        stmt = _insert(self.s, _PL).values(**values)
        await self.s.execute(stmt.on_conflict_do_update(index_elements=[_PL.c.id], set_={
            k: v for k, v in values.items() if k != "id"}))

    async def covered_segments(self) -> list[RatedSegment]:
        return [_rated(r) for r in await self.s.execute(sa.select(_S).where(_S.c.price_id.like("plan:%")))]

    async def commit(self) -> None:
        try:
            await self.s.commit()
        except IntegrityError as exc:
            raise Conflict("billing write conflict", code="conflict") from exc


class SqlBillingStore:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlBillingTx]:
        async with self._sessions() as session:
            tx = SqlBillingTx(session)
            try:
                yield tx
            finally:
                try:
                    await session.rollback()
                finally:
                    tx.release()

