"""Plans (包月/包年): purchase, renewal, expiry, cancellation, and the reservation the
scheduler keeps for them (rules: ``domain/billing/plans.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from remotegpu.application.billing.ports import BillingStore
from remotegpu.application.identity import audit
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import second
from remotegpu.domain.billing.models import period_of
from remotegpu.domain.billing.money import format_minor
from remotegpu.domain.billing.plans import Plan, PlanTerm, add_term
from remotegpu.domain.billing.prices import PriceBook
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Role

MAX_PLAN_GPUS = 64
_HOLDING = [s for s in EnvStatus if s.holds_resources]


@dataclass
class PlanService:
    store: BillingStore
    uow: UnitOfWorkFactory
    clock: Clock
    currency: str = "CNY"
    reservations: "Reservations | None" = None  # told when a plan changes

    def _changed(self) -> None:
        if self.reservations is not None:
            self.reservations.invalidate()

    async def _authorize(self, actor: User, workspace_id: str, role: Role) -> None:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, role)

    async def list(self, actor: User, workspace_id: str) -> list[Plan]:
        await self._authorize(actor, workspace_id, Role.VIEWER)
        async with self.store.transaction() as tx:
            return list(reversed(await tx.plans(workspace_id)))

    async def _plan(self, actor: User, plan_id: str, role: Role) -> Plan:
        async with self.store.transaction() as tx:
            found = [p for p in await tx.plans() if p.id == plan_id]
        if not found:
            raise NotFound("plan not found")
        try:
            await self._authorize(actor, found[0].workspace_id, role)
        except NotFound:
            raise NotFound("plan not found") from None
        return found[0]

    async def purchase(self, actor: User, workspace_id: str, gpu_model: str, gpu_count: int, term: str,
                       auto_renew: bool = False) -> Plan:
        """Workspace admins: pay the term's price once, from the wallet (409 insufficient_funds)."""
        await self._authorize(actor, workspace_id, Role.ADMIN)
        try:
            t = PlanTerm(term)
        except ValueError:
            raise InvalidInput("term is month or year", details={"field": "term"}) from None
        if not 1 <= gpu_count <= MAX_PLAN_GPUS:
            raise InvalidInput(f"gpu_count must be between 1 and {MAX_PLAN_GPUS}", details={"field": "gpu_count"})
        now = second(self.clock.now())
        async with self.store.transaction() as tx:
            await tx.lock()  # with the metering pass: a plan never lands in the middle of one
            price = PriceBook(await tx.prices()).at(t.price_kind, gpu_model, now)
            if price is None or price.unit_price <= 0:
                raise InvalidInput(f"no {t.value}ly plan is offered for {gpu_model}", code="plan_not_offered",
                                   details={"field": "gpu_model"})
            total = price.unit_price * gpu_count
            balance = await tx.balance(workspace_id)
            if balance < total:
                raise Conflict(f"the plan costs {format_minor(total, self.currency)}; the balance is "
                               f"{format_minor(balance, self.currency)}", code="insufficient_funds",
                               details={"balance": balance, "price": total, "currency": self.currency})
            plan = Plan(new_id(), workspace_id, gpu_model, gpu_count, t, total, now, add_term(now, t), now, auto_renew,
                        "active", actor.id, 1)
            await tx.save_plan(plan)
            await tx.add_entries([self._charge(plan, now, 1)])
            await tx.commit()
        self._changed()
        await self._audit(actor, "billing.plan.purchased", plan)
        return plan

    async def update(self, actor: User, plan_id: str, *, auto_renew: bool) -> Plan:
        plan = await self._plan(actor, plan_id, Role.ADMIN)
        async with self.store.transaction() as tx:
            plan.auto_renew = auto_renew
            await tx.save_plan(plan)
            await tx.commit()
        return plan

    async def renew(self, actor: User, plan_id: str) -> Plan:
        """By hand: the next term is paid now and added to the end."""
        plan = await self._plan(actor, plan_id, Role.ADMIN)
        if plan.status != "active":
            raise Conflict("only an active plan is renewed", code="invalid_state")
        async with self.store.transaction() as tx:
            await tx.lock()
            if not await self._renew(tx, plan, second(self.clock.now())):
                balance = await tx.balance(plan.workspace_id)
                raise Conflict("the balance does not cover the next term", code="insufficient_funds",
                               details={"balance": balance, "price": plan.price, "currency": self.currency})
            await tx.commit()
        self._changed()
        await self._audit(actor, "billing.plan.renewed", plan)
        return plan

    async def cancel(self, actor: User, plan_id: str) -> tuple[Plan, int]:
        """Ends now; the unused part of the current term goes back to the wallet (pro rata, rounded down)."""
        plan = await self._plan(actor, plan_id, Role.ADMIN)
        if plan.status != "active":
            raise Conflict("the plan has ended already", code="invalid_state")
        now = second(self.clock.now())
        async with self.store.transaction() as tx:
            await tx.lock()
            refund = plan.refund_at(now)
            plan.status, plan.ends_at = "cancelled", max(now, plan.starts_at)
            await tx.save_plan(plan)
            if refund > 0:
                await tx.add_entries([LedgerEntry(new_id(), plan.workspace_id, EntryKind.REFUND, refund, now,
                                                  f"plan {plan.id} cancelled: unused part refunded", actor.id,
                                                  f"plan-refund:{plan.id}", period_of(now))])
            await tx.commit()
        self._changed()
        await self._audit(actor, "billing.plan.cancelled", plan, refund=refund)
        return plan, refund

    async def sweep(self) -> list[str]:
        """Plans at their end: renewed (auto_renew and the balance covers it) or expired."""
        now = second(self.clock.now())
        changed = []
        async with self.store.transaction() as tx:
            await tx.lock()
            for plan in await tx.plans():
                if plan.status != "active" or plan.ends_at > now:
                    continue
                if not (plan.auto_renew and await self._renew(tx, plan, plan.ends_at)):
                    plan.status = "expired"
                    await tx.save_plan(plan)
                changed.append(plan.id)
            await tx.commit()
        if changed:
            self._changed()
        return changed

    async def _renew(self, tx, plan: Plan, at) -> bool:
        if await tx.balance(plan.workspace_id) < plan.price:
            return False
        plan.terms += 1
        plan.term_started_at = plan.ends_at
        plan.ends_at = add_term(plan.ends_at, plan.term)
        await tx.save_plan(plan)
        await tx.add_entries([self._charge(plan, at, plan.terms)])
        return True

    def _charge(self, plan: Plan, at, n: int) -> LedgerEntry:
        return LedgerEntry(new_id(), plan.workspace_id, EntryKind.PLAN, -plan.price, at,
                           f"plan: {plan.gpu_count} × {plan.gpu_model}, {plan.term.value} {n}", None,
                           f"plan:{plan.id}:{n}", period_of(at))

    async def _audit(self, actor: User, action: str, plan: Plan, **details) -> None:
        async with self.uow() as uow:
            await audit.record(uow, self.clock, action, actor_id=actor.id, target_type="plan", target_id=plan.id,
                               workspace_id=plan.workspace_id, gpu_model=plan.gpu_model, gpu_count=plan.gpu_count,
                               price=plan.price, **details)
            await uow.commit()


@dataclass
class Reservations:
    """The scheduler's side of plans: reserved GPUs are not lent. Asked by the queue pass
    before it places an environment: would placing it leave fewer free GPUs of its model
    than other workspaces' plans still hold unused?"""

    store: BillingStore
    clock: Clock
    ttl_seconds: float = 2.0  # plans are read at most this often (a queue pass asks per environment)
    _cache: tuple[float, list[Plan]] | None = field(default=None, init=False, repr=False)

    def invalidate(self) -> None:
        """A plan of this process changed: read them again (other processes: within ttl_seconds)."""
        self._cache = None

    async def _plans(self) -> list[Plan]:
        at = time.monotonic()
        if self._cache is None or at - self._cache[0] > self.ttl_seconds:
            async with self.store.transaction() as tx:
                self._cache = (at, [p for p in await tx.plans() if p.status == "active"])
        return self._cache[1]

    async def allows(self, uow: UnitOfWork, env, fleet) -> bool:
        if not env.gpus_wanted or not env.gpu_model:
            return True
        now = self.clock.now()
        plans = [p for p in await self._plans() if p.gpu_model == env.gpu_model and p.in_force(now)
                 and p.workspace_id != env.workspace_id]
        if not plans:
            return True
        reserved: dict[str, int] = {}
        for p in plans:
            reserved[p.workspace_id] = reserved.get(p.workspace_id, 0) + p.gpu_count
        in_use: dict[str, int] = {}
        for other in await uow.environments.list_by_status(_HOLDING):
            if other.id != env.id and other.gpu_model == env.gpu_model and other.workspace_id in reserved:
                in_use[other.workspace_id] = in_use.get(other.workspace_id, 0) + other.gpus_wanted
        held_back = sum(max(0, n - in_use.get(ws, 0)) for ws, n in reserved.items())
        free = fleet.gpu_counts().get(env.gpu_model, (0, 0))[1]
        return free - held_back >= env.gpus_wanted
