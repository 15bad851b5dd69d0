"""The metering pass: segments from readings, rated to now, charged to the ledger;
then low-balance warnings, stops at zero, and disks of long arrears.

Run every ``tick_seconds`` (60) by every server (``entrypoints/billing_runner.py``);
passes are serialised by ``BillingTx.lock`` and idempotent: a pass re-derives each
environment's segments from all its readings, upserts them by key, and charges the
ledger the difference between their rated amount and what they were charged before
(one charge entry per workspace and month per pass). After a crash the next pass
starts from the stored readings and segments and bills exactly what a pass without
the crash would have.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Awaitable, Callable

from remotegpu.application.billing.ports import BillingStore
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.domain.billing import notices  # noqa: F401 - registers the billing templates
from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import month_start, next_month, second, segments_of
from remotegpu.domain.billing.models import RatedSegment, Wallet, period_of
from remotegpu.domain.billing.money import format_minor
from remotegpu.domain.billing.plans import PlanCover
from remotegpu.domain.billing.prices import PriceBook, ResourceKind
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.notifications.models import Audience, Category, Message, Severity
from remotegpu.domain.shared.ids import new_id

log = logging.getLogger(__name__)

Notify = Callable[[list[Message]], Awaitable[object]]
#: Webhooks: (workspace id, event type, data) → deliveries queued (WebhookService.publish).
Publish = Callable[[str, str, dict], Awaitable[object]]
#: Statuses a workspace in arrears may not keep: they hold (or are about to hold) compute.
_BILLED_RUNNING = [EnvStatus.QUEUED, EnvStatus.STARTING, EnvStatus.RUNNING]


@dataclass
class BillingSettings:
    enabled: bool = False  # off: nothing is refused or stopped for money (metering and the ledger still run)
    tick_seconds: float = 60.0
    arrears_delete_days: int = 15  # disks of a workspace in arrears this long are deleted
    disk_warning_days: tuple[int, ...] = (7, 3, 1)  # warnings this many days before
    currency: str = "CNY"


@dataclass
class PassResult:
    metered: int = 0  # environments
    segments: int = 0  # segments written
    charged: dict[str, int] = field(default_factory=dict)  # workspace → minor units charged this pass
    stopped: list[str] = field(default_factory=list)  # environments stopped for arrears
    deleted: list[str] = field(default_factory=list)  # environments deleted after long arrears


@dataclass
class Metering:
    store: BillingStore
    clock: Clock
    settings: BillingSettings = field(default_factory=BillingSettings)
    uow: UnitOfWorkFactory | None = None  # environments (stops in arrears); None: metering only
    environments: object | None = None  # EnvironmentService: stop_env / delete_env
    notify: Notify | None = None
    plans: object | None = None  # PlanService: plans at their end are renewed or expire first
    publish: Publish | None = None  # webhooks (billing.balance_low)

    async def run(self) -> PassResult:
        if self.plans is not None:
            await self.plans.sweep()
        result = await self.meter()
        if self.settings.enabled and self.uow is not None:
            await self.enforce(result)
        return result

    async def meter(self, batch: int = 2000) -> PassResult:
        now = second(self.clock.now())
        result = PassResult()
        async with self.store.transaction() as tx:
            await tx.lock()
            book = PriceBook(await tx.prices())
            plans = await tx.plans()
            cover = None
            if plans:
                cover = PlanCover(plans)
                for rs in await tx.covered_segments():
                    g = rs.segment
                    cover.note(g.workspace_id, g.model, g.environment_id, g.start, g.end, g.quantity)
            todo = await tx.to_meter()
            deltas: dict[tuple[str, str], int] = defaultdict(int)
            # Fast path, the usual minute tick: nothing new was read for an environment, so its
            # closed segments stand; its open ones are re-rated to now unless a price change or
            # a month start falls since they began (then the whole history is derived again).
            clean = [env_id for env_id, _, dirty in todo if not dirty]
            full = [(env_id, version) for env_id, version, dirty in todo if dirty]
            in_database = getattr(tx, "rate_open_in_database", None)
            if in_database is not None and clean:
                # PostgreSQL: the usual minute in one statement; what it leaves (a month start, a
                # price change or a plan boundary since the segment began) takes the paths below.
                done = await in_database(now, month_start(now))
                if done is not None:
                    for key, (delta, count) in done.items():
                        deltas[key] += delta
                        result.segments += count
                    left = set(await tx.not_rated_since(clean, now))
                    result.metered += len(clean) - len(left)
                    clean = [env_id for env_id in clean if env_id in left]
            for i in range(0, len(clean), batch):
                chunk = clean[i:i + batch]
                opened = await tx.open_segments(chunk)
                upserts = []
                for env_id in chunk:
                    segs = opened.get(env_id, [])
                    if any(book.changes(rs.segment.kind, rs.segment.model, rs.segment.start, now + timedelta(seconds=1))
                           or next_month(rs.segment.start) <= now
                           or (cover is not None and rs.segment.kind is ResourceKind.GPU
                               and cover.cuts(rs.segment.workspace_id, rs.segment.model, rs.segment.start, now + timedelta(seconds=1)))
                           for rs in segs):
                        full.append((env_id, -1))
                        continue
                    for rs in segs:
                        amount = rs.segment.amount(now)
                        if rs.rated_until != now:
                            deltas[(rs.segment.workspace_id, rs.period)] += amount - rs.charged
                            upserts.append(RatedSegment(rs.segment, now, amount, amount))
                await tx.rate_open(upserts)
                result.metered += len(chunk)
                result.segments += len(upserts)
            for i in range(0, len(full), batch):
                chunk = full[i:i + batch]
                ids = [env_id for env_id, _ in chunk]
                readings = await tx.readings(ids)
                stored = await tx.segments(ids)
                upserts = []
                deleted: list[str] = []
                marks = []
                new_keys: set[str] = set()
                for env_id, version in chunk:
                    old = {rs.segment.key: rs for rs in stored.get(env_id, [])}
                    fresh = segments_of(readings.get(env_id, []), book, now, cover)
                    for g in fresh:
                        amount = g.amount(now)
                        before = old.pop(g.key, None)
                        rated = RatedSegment(g, g.end or now, amount, amount)
                        deltas[(g.workspace_id, rated.period)] += amount - (before.charged if before else 0)
                        if before is None:
                            new_keys.add(g.key)
                            upserts.append(rated)
                        elif before.segment != g or before.amount != amount or before.rated_until != rated.rated_until:
                            upserts.append(rated)
                    for key, gone in old.items():  # history changed under it (a late reading): give back its charge
                        deltas[(gone.segment.workspace_id, gone.period)] -= gone.charged
                        deleted.append(key)
                    if version >= 0:
                        marks.append((env_id, version, sum(1 for g in fresh if g.end is None)))
                await tx.save_segments(upserts, deleted, frozenset(new_keys))
                await tx.mark_metered(marks)
                result.metered += len(chunk)
                result.segments += len(upserts)
            entries = []
            stamp = int(now.timestamp())
            current = period_of(now)
            for (workspace_id, period), delta in sorted(deltas.items()):
                if not delta:
                    continue
                if period < current and await tx.bill(workspace_id, period) is not None:
                    # That month's bill is final: the correction is an adjustment now, never a change to it.
                    entries.append(LedgerEntry(
                        id=new_id(), workspace_id=workspace_id, kind=EntryKind.ADJUSTMENT, amount=-delta, at=now,
                        reason=f"correction of usage in {period} (its bill is final)",
                        reference=f"correction:{workspace_id}:{period}:{stamp}", period=current,
                    ))
                else:
                    entries.append(LedgerEntry(
                        id=new_id(), workspace_id=workspace_id, kind=EntryKind.CHARGE, amount=-delta, at=now,
                        reason=f"usage {period}", reference=f"charge:{workspace_id}:{period}:{stamp}", period=period,
                    ))
                result.charged[workspace_id] = result.charged.get(workspace_id, 0) + delta
            await tx.add_entries(entries)
            await tx.commit()
        return result

    # --- money rules ----------------------------------------------------------------------

    async def enforce(self, result: PassResult) -> None:
        """Warnings under the threshold, stops at zero, disk deletion after long arrears, budgets."""
        now = self.clock.now()
        messages: list[Message] = []
        low: list[tuple[str, int, int]] = []  # (workspace, balance, threshold): webhooks after the commit
        async with self.store.transaction() as tx:
            wallets = {w.workspace_id: w for w in await tx.wallets()}
            balances = await tx.balances()
            changed: list[Wallet] = []
            for workspace_id, balance in balances.items():
                wallet = wallets.get(workspace_id) or Wallet(workspace_id)
                before = (wallet.warned, wallet.arrears_since, wallet.disk_warnings, wallet.budget_notified)
                name = await self._workspace_name(workspace_id)
                if balance < wallet.warn_below and not wallet.warned and balance > 0:
                    wallet.warned = True
                    low.append((workspace_id, balance, wallet.warn_below))
                    messages.append(self._message("billing.low_balance", workspace_id, f"low:{workspace_id}:{int(now.timestamp())}",
                                                  Severity.WARNING, workspace=name, balance=format_minor(balance, self.settings.currency),
                                                  threshold=format_minor(wallet.warn_below, self.settings.currency)))
                elif balance >= wallet.warn_below:
                    wallet.warned = False
                if balance <= 0:
                    wallet.arrears_since = wallet.arrears_since or now
                else:
                    wallet.arrears_since, wallet.disk_warnings = None, 0
                await self._budget(tx, wallet, name, now, messages)
                if (wallet.warned, wallet.arrears_since, wallet.disk_warnings, wallet.budget_notified) != before:
                    changed.append(wallet)
                wallets[workspace_id] = wallet
            for wallet in changed:
                await tx.save_wallet(wallet)
            await tx.commit()
        for workspace_id, balance, threshold in low:
            await publish_event(self.publish, workspace_id, notices.BALANCE_LOW, {
                "workspace_id": workspace_id, "balance": balance, "threshold": threshold, "currency": self.settings.currency})
        for wallet in wallets.values():
            if wallet.arrears_since is not None:
                await self._arrears(wallet, balances.get(wallet.workspace_id, 0), now, result, messages)
            elif wallet.budget_hard_stop and wallet.budget_notified == f"{period_of(now)}:100":
                await self._stop_all(wallet.workspace_id, "stopped: the workspace's monthly budget is spent (hard stop); disk kept",
                                     result)
        if messages and self.notify is not None:
            try:
                await self.notify(messages)
            except Exception:  # noqa: BLE001 - money rules were applied; a lost notice is logged
                log.exception("billing notifications failed")

    async def _budget(self, tx, wallet: Wallet, name: str, now, messages: list[Message]) -> None:
        if not wallet.budget_monthly:
            return
        period = period_of(now)
        spent = -await tx.period_charges(wallet.workspace_id, period)
        reached = max((p for p in (50, 80, 100) if spent * 100 >= p * wallet.budget_monthly), default=0)
        last = int(wallet.budget_notified.split(":")[1]) if wallet.budget_notified.startswith(period + ":") else 0
        if reached > last:
            wallet.budget_notified = f"{period}:{reached}"
            cur = self.settings.currency
            messages.append(self._message("billing.budget", wallet.workspace_id, f"budget:{wallet.workspace_id}:{period}:{reached}",
                                          Severity.CRITICAL if reached >= 100 else Severity.WARNING, workspace=name, pct=reached,
                                          spent=format_minor(spent, cur), budget=format_minor(wallet.budget_monthly, cur)))

    def budget_exhausted(self, wallet: Wallet, spent: int) -> bool:
        return bool(wallet.budget_monthly and wallet.budget_hard_stop and spent >= wallet.budget_monthly)

    async def _arrears(self, wallet: Wallet, balance: int, now, result: PassResult, messages: list[Message]) -> None:
        """Stop what runs (GPUs released, disk kept); warn, then delete disks after N days."""
        assert self.uow is not None and self.environments is not None
        delete_on = wallet.arrears_since + timedelta(days=self.settings.arrears_delete_days)
        name = await self._workspace_name(wallet.workspace_id)
        cur = self.settings.currency
        stopped: list[str] = []
        deleted: list[str] = []
        async with self.uow() as uow:
            await uow.lock_scheduling()
            envs, _ = await uow.environments.list(
                workspace_ids=[wallet.workspace_id], statuses=None, include_deleted=False, limit=10_000, offset=0)
            for env in envs:
                if now >= delete_on and env.status not in (EnvStatus.DELETING, EnvStatus.DELETED):
                    await self.environments.delete_env(uow, env, f"deleted: {self.settings.arrears_delete_days} days in arrears")
                    await uow.environments.update(env)
                    deleted.append(env.id)
                elif env.status in _BILLED_RUNNING and env.desired.value == "running":
                    await self.environments.stop_env(
                        uow, env, f"stopped: the workspace's balance is {format_minor(balance, cur)} (arrears); disk kept")
                    await uow.environments.update(env)
                    stopped.append(env.id)
            await uow.commit()
        result.stopped.extend(stopped)
        result.deleted.extend(deleted)
        since = wallet.arrears_since.date().isoformat()
        if stopped:
            messages.append(self._message("billing.arrears_stopped", wallet.workspace_id,
                                          f"arrears:{wallet.workspace_id}:{int(now.timestamp())}", Severity.CRITICAL,
                                          workspace=name, balance=format_minor(balance, cur), count=len(stopped),
                                          delete_on=delete_on.date().isoformat()))
        if deleted:
            messages.append(self._message("billing.disks_deleted", wallet.workspace_id, f"deleted:{wallet.workspace_id}:{since}",
                                          Severity.CRITICAL, workspace=name, days=self.settings.arrears_delete_days, count=len(deleted)))
        # Warnings before deletion: one at each of disk_warning_days before, never silently.
        due = [d for d in sorted(self.settings.disk_warning_days, reverse=True) if now >= delete_on - timedelta(days=d)]
        if envs and len(due) > wallet.disk_warnings and now < delete_on:
            async with self.store.transaction() as tx:
                fresh = await tx.wallet(wallet.workspace_id)
                fresh.disk_warnings = len(due)
                await tx.save_wallet(fresh)
                await tx.commit()
            messages.append(self._message("billing.disk_deletion_warning", wallet.workspace_id,
                                          f"diskwarn:{wallet.workspace_id}:{since}:{len(due)}", Severity.CRITICAL, workspace=name,
                                          since=since, balance=format_minor(balance, cur), delete_on=delete_on.date().isoformat()))

    async def _stop_all(self, workspace_id: str, reason: str, result: PassResult) -> None:
        assert self.uow is not None and self.environments is not None
        async with self.uow() as uow:
            await uow.lock_scheduling()
            envs, _ = await uow.environments.list(workspace_ids=[workspace_id], statuses=_BILLED_RUNNING, include_deleted=False,
                                                  limit=10_000, offset=0)
            for env in envs:
                if env.desired.value == "running":
                    await self.environments.stop_env(uow, env, reason)
                    await uow.environments.update(env)
                    result.stopped.append(env.id)
            await uow.commit()

    async def _workspace_name(self, workspace_id: str) -> str:
        if self.uow is None:
            return workspace_id
        async with self.uow() as uow:
            ws = await uow.workspaces.get(workspace_id)
            return ws.name if ws is not None else workspace_id

    @staticmethod
    def _message(kind: str, workspace_id: str, key: str, severity: Severity, **params) -> Message:
        return Message(kind=kind, category=Category.BILLING, severity=severity, audience=Audience(workspace_id=workspace_id),
                       source_key=key, params=params, link="/billing")


async def publish_event(publish: Publish | None, workspace_id: str, event_type: str, data: dict) -> None:
    """Queue a billing webhook; a failure is logged, never undoes the money rule it follows."""
    if publish is None:
        return
    try:
        await publish(workspace_id, event_type, data)
    except Exception:  # noqa: BLE001
        log.exception("queueing webhook %s for workspace %s failed", event_type, workspace_id)
