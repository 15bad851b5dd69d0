"""Billing test helpers: seeding a plan without the API (no price or money needed)."""

from __future__ import annotations

from remotegpu.domain.billing.plans import Plan, PlanTerm, add_term
from remotegpu.domain.shared.clock import utcnow
from remotegpu.domain.shared.ids import new_id


async def seed_plan(container, workspace_id: str, created_by: str) -> str:
    now = utcnow().replace(microsecond=0)
    plan = Plan(new_id(), workspace_id, "NVIDIA A100-SXM4-80GB", 1, PlanTerm.MONTH, 100_000, now, add_term(now, PlanTerm.MONTH),
                now, False, "active", created_by, 1)
    async with container.billing_store().transaction() as tx:
        await tx.save_plan(plan)
        await tx.commit()
    return plan.id
