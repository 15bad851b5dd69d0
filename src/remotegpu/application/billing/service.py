"""Billing use cases for people: prices (admins), wallets and their ledgers, top-ups and
adjustments (admins, audited), usage breakdowns, monthly bills (draft → finalized, CSV).

Who may do what: workspace viewers read its wallet, usage and bills; workspace admins
set its warning threshold and budget; platform admins set prices, top up, adjust and
grant credit. Another tenant's wallet is "not found".
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remotegpu.application.billing.metering import publish_event
from remotegpu.application.billing.ports import BillingStore, PaymentGateway
from remotegpu.application.identity import audit
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry, unused_credit
from remotegpu.domain.billing.metering import month_start, second
from remotegpu.domain.billing.models import ADJUSTING, Bill, BillLine, Wallet, bill_lines, period_of
from remotegpu.domain.billing.notices import BILL_FINALIZED
from remotegpu.domain.billing.prices import Price, PriceBook, ResourceKind
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workloads.models import parse_node_id
from remotegpu.domain.workspaces.models import Role

MAX_AMOUNT = 10**12  # minor units: a bound on one entry
GROUPS = ("environment", "user", "gpu_model", "day", "kind", "job")


@dataclass(frozen=True)
class WalletView:
    wallet: Wallet
    balance: int
    currency: str
    month_charges: int  # charged this month (positive)
    hourly_burn: int  # what its running environments cost per hour now


@dataclass
class BillingService:
    store: BillingStore
    uow: UnitOfWorkFactory
    clock: Clock
    payments: PaymentGateway
    currency: str = "CNY"
    enabled: bool = False
    # hourly_prices' answer: (change epoch, when the next price takes effect or None, prices).
    _hourly: tuple[int, datetime | None, dict[str, int]] | None = field(default=None, init=False, repr=False)
    # hourly_prices' read under way for an epoch: requests of that epoch wait for it (not 50 reads at once)
    _hourly_reading: tuple[int, asyncio.Future] | None = field(default=None, init=False, repr=False)
    publish: object | None = None  # webhooks (billing.bill_finalized): WebhookService.publish

    # --- prices -------------------------------------------------------------------------
    async def prices(self, *, include_history: bool = False) -> list[Price]:
        async with self.store.transaction() as tx:
            book = PriceBook(await tx.prices())
        items = book.all() if include_history else book.current(self.clock.now())
        return sorted(items, key=lambda p: (p.kind.value, p.model, p.effective_from))

    async def set_price(self, actor: User, kind: str, model: str, unit_price: int, effective_from: datetime | None) -> Price:
        _admin(actor)
        try:
            rk = ResourceKind(kind)
        except ValueError:
            raise InvalidInput(f"kind must be one of {', '.join(k.value for k in ResourceKind)}", details={"field": "kind"}) from None
        now = second(self.clock.now())
        start = second(effective_from) if effective_from is not None else now
        if start < now:
            raise InvalidInput("a price applies from now or later: usage already metered keeps its price",
                               details={"field": "effective_from"})
        if not 0 <= unit_price <= MAX_AMOUNT:
            raise InvalidInput("unit_price out of range", details={"field": "unit_price"})
        price = Price(new_id(), rk, model.strip() if rk.per_model else "", unit_price, start, actor.id)
        async with self.store.transaction() as tx:
            await tx.add_price(price)
            await tx.commit()
        self._hourly = None  # hourly_prices: the new price counts at once here (elsewhere: the epoch moved)
        async with self.uow() as uow:
            await audit.record(uow, self.clock, "billing.price.set", actor_id=actor.id, target_type="price", target_id=price.id,
                               kind=rk.value, model=price.model, unit_price=unit_price, effective_from=start.isoformat())
            await uow.commit()
        return price

    async def hourly_prices(self, epoch: int | None = None) -> dict[str, int]:
        """GPU model → minor units per GPU-hour now.

        ``epoch``: the change epoch the caller read (gpu-types, on every request): the
        answer is kept while that epoch stands (a price written anywhere moves it:
        migration 0030; ``set_price`` here also drops it at once) and until the next
        price takes effect. The same object is returned while it is kept."""
        now = self.clock.now()
        kept = self._hourly
        if epoch is not None and kept is not None and kept[0] == epoch and (kept[1] is None or now < kept[1]):
            return kept[2]
        reading = self._hourly_reading
        if epoch is not None and reading is not None and reading[0] == epoch:
            try:  # read after this epoch was: the truth at it, as this request's own read would be
                return await asyncio.shield(reading[1])
            except Exception:  # noqa: BLE001 - that read's failure is its own: read here
                pass
        future: asyncio.Future | None = None
        if epoch is not None:
            future = asyncio.get_running_loop().create_future()
            self._hourly_reading = (epoch, future)
        try:
            async with self.store.transaction() as tx:
                book = PriceBook(await tx.prices())
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("price read cancelled"))
                future.exception()  # retrieved: no warning when nobody waited
            raise
        finally:
            if future is not None and self._hourly_reading is not None and self._hourly_reading[1] is future:
                self._hourly_reading = None
        gpu = [p for p in book.all() if p.kind is ResourceKind.GPU]
        prices = {p.model: p.unit_price for p in book.current(now) if p.kind is ResourceKind.GPU and p.effective_from <= now}
        if epoch is not None:
            self._hourly = (epoch, min((p.effective_from for p in gpu if p.effective_from > now), default=None), prices)
            future.set_result(prices)
        return prices

    async def estimate(self, *, gpu_model: str | None, gpu_count: int, cpu_cores: int, memory_gib: int, disk_gib: int) -> int:
        async with self.store.transaction() as tx:
            book = PriceBook(await tx.prices())
        return book.hourly(self.clock.now(), gpu_model=gpu_model, gpu_count=gpu_count, cpu_cores=cpu_cores,
                           memory_gib=memory_gib, disk_gib=disk_gib)

    # --- wallets --------------------------------------------------------------------------
    async def _authorize(self, actor: User, workspace_id: str, role: Role = Role.VIEWER) -> str:
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, role)
            return view.workspace.name

    async def wallet(self, actor: User, workspace_id: str) -> WalletView:
        await self._authorize(actor, workspace_id)
        now = self.clock.now()
        async with self.store.transaction() as tx:
            wallet = await tx.wallet(workspace_id)
            balance = await tx.balance(workspace_id)
            month = -await tx.period_charges(workspace_id, period_of(now))
            open_now = [rs for rs in await tx.usage(workspace_id, now - timedelta(days=62), now + timedelta(seconds=1))
                        if rs.segment.end is None]
        return WalletView(wallet, balance, self.currency, month, _hourly_burn(open_now))

    async def balances_and_burn(self, workspace_ids: list[str] | None = None) -> dict[str, tuple[int, int]]:
        """workspace id → (balance, what its running environments cost per hour now), of
        the workspaces named (None: every workspace with a wallet or ledger). Internal:
        the monitoring context's balance_low alert rules; no actor."""
        now = self.clock.now()
        out: dict[str, tuple[int, int]] = {}
        async with self.store.transaction() as tx:
            balances = await tx.balances(workspace_ids)
            for ws in (workspace_ids if workspace_ids is not None else sorted(balances)):
                open_now = [rs for rs in await tx.usage(ws, now - timedelta(days=62), now + timedelta(seconds=1))
                            if rs.segment.end is None]
                out[ws] = (balances.get(ws, 0), _hourly_burn(open_now))
        return out

    async def ledger(self, actor: User, workspace_id: str, *, limit: int, offset: int) -> tuple[list[LedgerEntry], int]:
        await self._authorize(actor, workspace_id)
        async with self.store.transaction() as tx:
            return await tx.entries(workspace_id, limit=limit, offset=offset)

    async def update_wallet(self, actor: User, workspace_id: str, *, warn_below: int | None = None,
                            budget_monthly: int | None | str = "keep", budget_hard_stop: bool | None = None) -> WalletView:
        await self._authorize(actor, workspace_id, Role.ADMIN)
        async with self.store.transaction() as tx:
            wallet = await tx.wallet(workspace_id)
            if warn_below is not None:
                if not 0 <= warn_below <= MAX_AMOUNT:
                    raise InvalidInput("warn_below out of range", details={"field": "warn_below"})
                wallet.warn_below, wallet.warned = warn_below, False
            if budget_monthly != "keep":
                if budget_monthly is not None and not 0 < budget_monthly <= MAX_AMOUNT:
                    raise InvalidInput("budget_monthly out of range", details={"field": "budget_monthly"})
                wallet.budget_monthly, wallet.budget_notified = budget_monthly, ""
            if budget_hard_stop is not None:
                wallet.budget_hard_stop = budget_hard_stop
            await tx.save_wallet(wallet)
            await tx.commit()
        return await self.wallet(actor, workspace_id)

    async def post(self, actor: User, workspace_id: str, kind: str, amount: int, reason: str, *,
                   reference: str | None = None, expires_at: datetime | None = None, ip: str | None = None) -> LedgerEntry:
        """Admins: top-up (payment port: a confirmed offline transfer), adjustment, credit grant, refund."""
        await self._authorize(actor, workspace_id)  # another tenant's workspace: not found
        _admin(actor)
        try:
            ek = EntryKind(kind)
        except ValueError:
            ek = None
        if ek not in (EntryKind.TOPUP, EntryKind.ADJUSTMENT, EntryKind.CREDIT, EntryKind.REFUND):
            raise InvalidInput("kind must be topup, adjustment, credit or refund", details={"field": "kind"})
        if not reason.strip():
            raise InvalidInput("a reason is required", details={"field": "reason"})
        if not 0 < abs(amount) <= MAX_AMOUNT:
            raise InvalidInput("amount out of range", details={"field": "amount"})
        now = self.clock.now()
        if expires_at is not None and (ek is not EntryKind.CREDIT or expires_at <= now):
            raise InvalidInput("expires_at: only a credit grant expires, in the future", details={"field": "expires_at"})
        ref = None
        if ek is EntryKind.TOPUP:
            receipt = await self.payments.confirm(workspace_id, amount, reference or new_id())
            ref = f"topup:{receipt.method}:{receipt.reference}"
        elif reference:
            ref = f"{ek.value}:{reference}"
        entry = LedgerEntry(new_id(), workspace_id, ek, amount, now, reason.strip()[:500], actor.id, ref, period_of(now), expires_at)
        async with self.store.transaction() as tx:
            if ref is not None and await tx.has_reference(ref):
                raise Conflict("this reference was booked already", code="duplicate_reference", details={"reference": reference})
            await tx.add_entries([entry])
            await tx.commit()
        async with self.uow() as uow:
            await audit.record(uow, self.clock, f"billing.{ek.value}", actor_id=actor.id, target_type="workspace",
                               target_id=workspace_id, ip=ip, amount=amount, reason=entry.reason, entry_id=entry.id)
            await uow.commit()
        return entry

    async def expire_credits(self) -> int:
        """Post the unused part of every expired credit grant (once per grant)."""
        now = self.clock.now()
        posted = 0
        async with self.store.transaction() as tx:
            for workspace_id in (await tx.balances()).keys():
                entries = await tx.all_entries(workspace_id)
                for grant in [e for e in entries if e.kind is EntryKind.CREDIT and e.expires_at and e.expires_at <= now]:
                    ref = f"credit_expiry:{grant.id}"
                    if await tx.has_reference(ref):
                        continue
                    left = unused_credit(grant, entries)
                    if left > 0:
                        e = LedgerEntry(new_id(), workspace_id, EntryKind.CREDIT_EXPIRY, -left, now,
                                        f"credit {grant.id} expired", None, ref, period_of(now))
                        await tx.add_entries([e])
                        entries.append(e)
                        posted += 1
            await tx.commit()
        return posted

    # --- usage and bills ------------------------------------------------------------------
    async def usage(self, actor: User, workspace_id: str, *, start: datetime | None, end: datetime | None,
                    group_by: str) -> dict:
        await self._authorize(actor, workspace_id)
        if group_by not in GROUPS:
            raise InvalidInput(f"group_by must be one of {', '.join(GROUPS)}", details={"field": "group_by"})
        now = self.clock.now()
        start = start or month_start(now)
        end = end or now + timedelta(seconds=1)
        if end <= start or end - start > timedelta(days=400):
            raise InvalidInput("the range must be positive and at most 400 days", details={"field": "start"})
        async with self.store.transaction() as tx:
            segments = await tx.usage(workspace_id, start, end)
        groups: dict[str, dict[str, int]] = defaultdict(lambda: {"amount": 0, "seconds": 0})
        for rs in segments:
            g = rs.segment
            if group_by == "job":  # training-job nodes (subject <job>.a<n>.n<rank>) by their job; environments left out
                parsed = parse_node_id(g.environment_id)
                if parsed is None:
                    continue
                key = parsed[0]
            else:
                key = {"environment": g.environment_id, "user": g.owner_id,
                       "gpu_model": g.model if g.kind is ResourceKind.GPU else "",
                       "day": g.start.date().isoformat(), "kind": g.kind.value}[group_by]
            groups[key]["amount"] += rs.amount
            groups[key]["seconds"] += g.seconds(rs.rated_until)
        total = sum(v["amount"] for v in groups.values())
        return {"workspace_id": workspace_id, "start": start, "end": end, "group_by": group_by, "currency": self.currency,
                "total": total, "groups": [{"key": k, **v} for k, v in sorted(groups.items())]}

    async def bills(self, actor: User, workspace_id: str) -> list[Bill]:
        await self._authorize(actor, workspace_id)
        now = self.clock.now()
        periods, m = [], month_start(now)
        for _ in range(12):
            periods.append(period_of(m))
            m = month_start(m - timedelta(days=1))
        out = []
        for period in periods:
            bill = await self._bill(workspace_id, period)
            if bill.lines or bill.charged or bill.adjustments or bill.status == "finalized":
                out.append(bill)
        return out

    async def bill(self, actor: User, workspace_id: str, period: str) -> Bill:
        await self._authorize(actor, workspace_id)
        _check_period(period)
        return await self._bill(workspace_id, period)

    async def _bill(self, workspace_id: str, period: str) -> Bill:
        async with self.store.transaction() as tx:
            adjustments = await tx.period_entries(workspace_id, period, ADJUSTING)
            stored = await tx.bill(workspace_id, period)
            if stored is not None:
                stored.adjustments = adjustments
                return stored
            segments = await tx.period_segments(workspace_id, period)
            charged = -await tx.period_charges(workspace_id, period)
        lines = bill_lines(segments, self.clock.now())
        return Bill(workspace_id, period, "draft", sum(line.amount for line in lines), charged, lines, adjustments=adjustments)

    async def finalize(self, period: str | None = None) -> int:
        """Finalize a month's bills (default: last month): once every segment of the month is
        closed and each workspace's lines add up to its ledger charges for that month, its
        bill is stored and never changes again. Set-based: a few queries for every workspace."""
        now = self.clock.now()
        period = period or period_of(month_start(now) - timedelta(days=1))
        if period >= period_of(now):
            raise InvalidInput("only a month that has ended can be finalized", details={"field": "period"})
        async with self.store.transaction() as tx:
            before = await tx.finalized(period)
        made = await self._finalize(period, now)
        if made and self.publish is not None:
            async with self.store.transaction() as tx:
                new = sorted(await tx.finalized(period) - before)
                bills = [await tx.bill(ws, period) for ws in new]
            for b in bills:
                if b is not None:
                    await publish_event(self.publish, b.workspace_id, BILL_FINALIZED, {
                        "workspace_id": b.workspace_id, "period": b.period, "total": b.total, "currency": self.currency,
                        "lines": len(b.lines)})
        return made

    async def _finalize(self, period: str, now: datetime) -> int:
        async with self.store.transaction() as tx:
            in_database = getattr(tx, "finalize_in_database", None)
            made = await in_database(period, now) if in_database is not None else None
            if made is not None:
                await tx.commit()
                return made
            lines = await tx.period_lines(period)
            charged = await tx.period_charges_all(period)
            waiting = await tx.open_workspaces(period) | await tx.finalized(period)
            bills = []
            for workspace_id in sorted(set(lines) | set(charged)):
                if workspace_id in waiting:
                    continue
                ws_lines = lines.get(workspace_id, [])
                total = sum(line.amount for line in ws_lines)
                if total != -charged.get(workspace_id, 0):
                    continue  # a charge is still on its way: a later pass finalizes it
                bills.append(Bill(workspace_id, period, "finalized", total, total, ws_lines, now))
            await tx.add_bills(bills)
            await tx.commit()
        return len(bills)

    async def bill_csv(self, actor: User, workspace_id: str, period: str) -> str:
        bill = await self.bill(actor, workspace_id, period)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["period", "environment_id", "kind", "model", "quantity", "unit_price_minor", "seconds", "amount_minor"])
        for line in bill.lines:
            w.writerow([bill.period, line.environment_id, line.kind, line.model, line.quantity, line.unit_price, line.seconds, line.amount])
        w.writerow([bill.period, "", "total", "", "", "", "", bill.total])
        if bill.adjustments:
            # Adjustments after the usage total, each with its ledger entry, when, who and why;
            # signed as the bill counts them (negative: in the workspace's favour).
            w.writerow([])
            w.writerow(["period", "entry_id", "kind", "at", "actor_id", "reason", "", "amount_minor"])
            for e in bill.adjustments:
                w.writerow([bill.period, e.id, e.kind.value, e.at.isoformat(), e.actor_id or "", e.reason, "", -e.amount])
            w.writerow([bill.period, "", "net", "", "", "", "", bill.net])
        return out.getvalue()


def _admin(actor: User) -> None:
    if not actor.is_admin:
        raise PermissionDenied("only platform admins may do this", code="admin_required")


def _check_period(period: str) -> None:
    try:
        datetime.strptime(period, "%Y-%m")
    except ValueError:
        raise InvalidInput("period is YYYY-MM", details={"field": "period"}) from None


def lines_json(lines: list[BillLine]) -> str:
    return json.dumps([{"environment_id": x.environment_id, "kind": x.kind, "model": x.model, "quantity": x.quantity,
                        "unit_price": x.unit_price, "seconds": x.seconds, "amount": x.amount} for x in lines],
                      separators=(",", ":"))


def lines_from_json(text: str) -> list[BillLine]:
    return [BillLine(**d) for d in json.loads(text)]


def _hourly_burn(open_now: list) -> int:
    """Minor units per hour of the open (running) segments: unit prices are per hour, and
    disks' per day."""
    burn = sum(rs.segment.quantity * rs.segment.unit_price * (24 if rs.segment.kind is not ResourceKind.DISK else 1)
               for rs in open_now)
    return (2 * burn + 24) // 48
