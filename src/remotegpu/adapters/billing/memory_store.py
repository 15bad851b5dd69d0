"""Billing in memory (tests, ``persistence=memory``): same behaviour as the SQL store,
writes applied at commit."""

from __future__ import annotations

import asyncio
import copy
from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator

from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.billing.models import Bill, BillLine, RatedSegment, Wallet, bill_lines
from remotegpu.domain.billing.plans import Plan
from remotegpu.domain.billing.prices import Price
from remotegpu.domain.shared.errors import Conflict


class _State:
    def __init__(self) -> None:
        self.prices: list[Price] = []
        self.readings: dict[str, list[Reading]] = {}
        self.meters: dict[str, list] = {}  # env → [workspace, version, metered_version, open]
        self.segments: dict[str, RatedSegment] = {}
        self.entries: list[LedgerEntry] = []
        self.wallets: dict[str, Wallet] = {}
        self.bills: dict[tuple[str, str], Bill] = {}
        self.plans: dict[str, Plan] = {}


class _Tx:
    def __init__(self, store: "InMemoryBillingStore"):
        self._store = store
        self.st = copy.deepcopy(store.state)
        self._locked = False

    async def lock(self) -> None:
        await self._store.lock.acquire()
        self._locked = True
        self.st = copy.deepcopy(self._store.state)

    def release(self) -> None:
        if self._locked:
            self._store.lock.release()
            self._locked = False

    async def prices(self) -> list[Price]:
        return list(self.st.prices)

    async def add_price(self, price: Price) -> None:
        self.st.prices.append(price)

    async def add_readings(self, readings: list[Reading]) -> None:
        for r in readings:
            self.st.readings.setdefault(r.environment_id, []).append(r)
            m = self.st.meters.setdefault(r.environment_id, [r.workspace_id, 0, 0, 0])
            m[1] += 1

    async def to_meter(self) -> list[tuple[str, int, bool]]:
        return sorted((e, m[1], m[1] > m[2]) for e, m in self.st.meters.items() if m[1] > m[2] or m[3] > 0)

    async def open_segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]:
        return {e: [rs for rs in segs if rs.segment.end is None] for e, segs in (await self.segments(environment_ids)).items()}

    async def readings(self, environment_ids: list[str]) -> dict[str, list[Reading]]:
        return {e: list(self.st.readings.get(e, [])) for e in environment_ids}

    async def segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]:
        ids = set(environment_ids)
        out: dict[str, list[RatedSegment]] = {}
        for rs in self.st.segments.values():
            if rs.segment.environment_id in ids:
                out.setdefault(rs.segment.environment_id, []).append(rs)
        return out

    async def save_segments(self, upserts: list[RatedSegment], deleted_keys: list[str],
                            new_keys: frozenset[str] = frozenset()) -> None:
        for k in deleted_keys:
            self.st.segments.pop(k, None)
        for rs in upserts:
            self.st.segments[rs.segment.key] = rs

    async def rate_open(self, rated: list[RatedSegment]) -> None:
        await self.save_segments(rated, [])

    async def mark_metered(self, marks: list[tuple[str, int, int]]) -> None:
        for e, v, o in marks:
            m = self.st.meters[e]
            m[2], m[3] = v, o

    async def add_entries(self, entries: list[LedgerEntry]) -> None:
        refs = {e.reference for e in self.st.entries if e.reference}
        for e in entries:
            if e.reference and e.reference in refs:
                raise Conflict("a ledger entry with this reference exists", code="duplicate_reference")
            refs.add(e.reference)
        self.st.entries.extend(entries)

    async def has_reference(self, reference: str) -> bool:
        return any(e.reference == reference for e in self.st.entries)

    async def balance(self, workspace_id: str) -> int:
        return sum(e.amount for e in self.st.entries if e.workspace_id == workspace_id)

    async def balances(self, workspace_ids: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {w: 0 for w in self.st.wallets}
        for e in self.st.entries:
            out[e.workspace_id] = out.get(e.workspace_id, 0) + e.amount
        return out if workspace_ids is None else {w: out.get(w, 0) for w in workspace_ids}

    async def entries(self, workspace_id: str, *, limit: int, offset: int) -> tuple[list[LedgerEntry], int]:
        mine = sorted((e for e in self.st.entries if e.workspace_id == workspace_id), key=lambda e: (e.at, e.id), reverse=True)
        return mine[offset:offset + limit], len(mine)

    async def all_entries(self, workspace_id: str) -> list[LedgerEntry]:
        return sorted((e for e in self.st.entries if e.workspace_id == workspace_id), key=lambda e: e.at)

    async def period_charges(self, workspace_id: str, period: str) -> int:
        return sum(e.amount for e in self.st.entries
                   if e.workspace_id == workspace_id and e.period == period and e.kind is EntryKind.CHARGE)

    async def period_entries(self, workspace_id: str, period: str, kinds: tuple[EntryKind, ...]) -> list[LedgerEntry]:
        return sorted((e for e in self.st.entries if e.workspace_id == workspace_id and e.period == period and e.kind in kinds),
                      key=lambda e: (e.at, e.id))

    async def wallet(self, workspace_id: str) -> Wallet:
        return copy.copy(self.st.wallets.get(workspace_id) or Wallet(workspace_id))

    async def wallets(self) -> list[Wallet]:
        return [copy.copy(w) for w in self.st.wallets.values()]

    async def save_wallet(self, wallet: Wallet) -> None:
        self.st.wallets[wallet.workspace_id] = copy.copy(wallet)

    async def usage(self, workspace_id: str, start: datetime, end: datetime) -> list[RatedSegment]:
        return [rs for rs in self.st.segments.values() if rs.segment.workspace_id == workspace_id and start <= rs.segment.start < end]

    async def period_segments(self, workspace_id: str, period: str) -> list[RatedSegment]:
        return [rs for rs in self.st.segments.values() if rs.segment.workspace_id == workspace_id and rs.period == period]

    async def bill(self, workspace_id: str, period: str) -> Bill | None:
        return self.st.bills.get((workspace_id, period))

    async def add_bill(self, bill: Bill) -> None:
        self.st.bills[(bill.workspace_id, bill.period)] = bill

    async def period_lines(self, period: str) -> dict[str, list[BillLine]]:
        by: dict[str, list[RatedSegment]] = {}
        for rs in self.st.segments.values():
            if rs.period == period:
                by.setdefault(rs.segment.workspace_id, []).append(rs)
        return {ws: bill_lines(segs, datetime.max) for ws, segs in by.items()}

    async def period_charges_all(self, period: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.st.entries:
            if e.period == period and e.kind is EntryKind.CHARGE:
                out[e.workspace_id] = out.get(e.workspace_id, 0) + e.amount
        return out

    async def open_workspaces(self, period: str) -> set[str]:
        return {rs.segment.workspace_id for rs in self.st.segments.values() if rs.period == period and rs.segment.end is None}

    async def finalized(self, period: str) -> set[str]:
        return {ws for ws, p in self.st.bills if p == period}

    async def add_bills(self, bills: list[Bill]) -> None:
        for b in bills:
            self.st.bills[(b.workspace_id, b.period)] = b

    async def plans(self, workspace_id: str | None = None) -> list[Plan]:
        return sorted((copy.copy(p) for p in self.st.plans.values() if workspace_id in (None, p.workspace_id)),
                      key=lambda p: (p.starts_at, p.id))

    async def save_plan(self, plan: Plan) -> None:
        self.st.plans[plan.id] = copy.copy(plan)

    async def covered_segments(self) -> list[RatedSegment]:
        return [rs for rs in self.st.segments.values() if (rs.segment.price_id or "").startswith("plan:")]

    async def commit(self) -> None:
        self._store.state = self.st
        self.st = copy.deepcopy(self.st)


class InMemoryBillingStore:
    def __init__(self) -> None:
        self.state = _State()
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        tx = _Tx(self)
        try:
            yield tx
        finally:
            tx.release()
