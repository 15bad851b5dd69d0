"""Billing: prices, wallets and their ledgers, usage, monthly bills (application/billing)."""

from __future__ import annotations

import re

from aiohttp import web

from remotegpu.domain.billing.ledger import LedgerEntry
from remotegpu.domain.billing.models import Bill
from remotegpu.domain.billing.prices import Price
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.billing import (
    BillAdjustmentOut,
    BillLineOut,
    BillListOut,
    BillOut,
    EntryIn,
    EntryListQuery,
    EntryOut,
    EstimateOut,
    EstimateQuery,
    PriceIn,
    PriceOut,
    PriceQuery,
    BillingUsageOut,
    UsageQuery,
    WalletOut,
    WalletPatchIn,
    WorkspaceQuery,
)
from remotegpu.entrypoints.http.schemas.common import Page

TAGS = ["billing"]
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _currency(call: Call) -> str:
    return call.container.settings().billing_currency


def _price(p: Price, currency: str) -> PriceOut:
    return PriceOut(id=p.id, kind=p.kind.value, model=p.model, unit_price=p.unit_price,
                    period={"disk": "day", "gpu_month": "month", "gpu_year": "year"}.get(p.kind.value, "hour"),
                    effective_from=p.effective_from, currency=currency)


def _entry(e: LedgerEntry) -> EntryOut:
    return EntryOut(id=e.id, workspace_id=e.workspace_id, kind=e.kind.value, amount=e.amount, at=e.at, reason=e.reason,
                    actor_id=e.actor_id, period=e.period, expires_at=e.expires_at)


def _bill(b: Bill, currency: str) -> BillOut:
    return BillOut(workspace_id=b.workspace_id, period=b.period, status=b.status, total=b.total, charged=b.charged,
                   currency=currency, finalized_at=b.finalized_at,
                   lines=[BillLineOut(**line.__dict__) for line in b.lines],
                   adjustments=[BillAdjustmentOut(entry_id=e.id, kind=e.kind.value, amount=e.amount, at=e.at, reason=e.reason,
                                                  actor_id=e.actor_id) for e in b.adjustments],
                   adjustments_total=b.adjustments_total, net=b.net)


def _period(call: Call) -> str:
    period = call.path("period")
    if not _PERIOD.match(period):
        raise InvalidInput("period is YYYY-MM", details={"field": "period"})
    return period


@api.get("/api/v1/billing/prices", query=PriceQuery, response=Page[PriceOut], tags=TAGS, errors=[401, 422])
async def list_prices(call: Call) -> Page[PriceOut]:
    """Prices in force now (or every price ever set, `history=true`)."""
    prices = await call.container.billing_service().prices(include_history=call.query.history)
    return Page[PriceOut](items=[_price(p, _currency(call)) for p in prices], total=len(prices))


@api.post("/api/v1/billing/prices", body=PriceIn, response=PriceOut, status=201, tags=TAGS, errors=[401, 403, 422])
async def set_price(call: Call) -> PriceOut:
    """Set a price from `effective_from` on (platform admins, audited); earlier usage keeps its price."""
    b: PriceIn = call.body
    model = b.model if b.kind in ("gpu", "gpu_month", "gpu_year") else ""
    price = await call.container.billing_service().set_price(call.user, b.kind, model, b.unit_price, b.effective_from)
    return _price(price, _currency(call))


@api.get("/api/v1/billing/estimate", query=EstimateQuery, response=EstimateOut, tags=TAGS, errors=[401, 422])
async def estimate(call: Call) -> EstimateOut:
    """What an environment of this shape costs per hour now (the create form's estimate)."""
    q: EstimateQuery = call.query
    hourly = await call.container.billing_service().estimate(gpu_model=q.gpu_model, gpu_count=q.gpu_count, cpu_cores=q.cpu_cores,
                                                             memory_gib=q.memory_gib, disk_gib=q.disk_gib)
    return EstimateOut(hourly_price=hourly, currency=_currency(call))


async def _wallet_out(call: Call, workspace_id: str) -> WalletOut:
    view = await call.container.billing_service().wallet(call.user, workspace_id)
    w = view.wallet
    return WalletOut(workspace_id=w.workspace_id, balance=view.balance, currency=view.currency, month_charges=view.month_charges,
                     hourly_burn=view.hourly_burn, warn_below=w.warn_below, in_arrears_since=w.arrears_since,
                     budget_monthly=w.budget_monthly, budget_hard_stop=w.budget_hard_stop,
                     billing_enabled=call.container.settings().billing_enabled)


@api.get("/api/v1/billing/wallet", query=WorkspaceQuery, response=WalletOut, tags=TAGS, errors=[401, 404, 422])
async def get_wallet(call: Call) -> WalletOut:
    """A workspace's wallet: balance (the ledger's sum), this month's charges, settings (workspace viewers)."""
    return await _wallet_out(call, call.query.workspace_id)


@api.patch("/api/v1/billing/wallet", body=WalletPatchIn, response=WalletOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_wallet(call: Call) -> WalletOut:
    """Warning threshold and monthly budget (workspace admins)."""
    b: WalletPatchIn = call.body
    budget = "keep" if "budget_monthly" not in b.model_fields_set else (b.budget_monthly or None)
    await call.container.billing_service().update_wallet(call.user, b.workspace_id, warn_below=b.warn_below,
                                                         budget_monthly=budget, budget_hard_stop=b.budget_hard_stop)
    return await _wallet_out(call, b.workspace_id)


@api.get("/api/v1/billing/wallet/entries", query=EntryListQuery, response=Page[EntryOut], tags=TAGS, errors=[401, 404, 422])
async def list_entries(call: Call) -> Page[EntryOut]:
    """The wallet's ledger, newest first (workspace viewers)."""
    q: EntryListQuery = call.query
    entries, total = await call.container.billing_service().ledger(call.user, q.workspace_id, limit=q.limit, offset=q.offset)
    return Page[EntryOut](items=[_entry(e) for e in entries], total=total)


@api.post("/api/v1/billing/wallet/entries", body=EntryIn, response=EntryOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def add_entry(call: Call) -> EntryOut:
    """Top up (a confirmed offline transfer, booked once per reference), adjust, grant credit or refund
    (platform admins, with a reason, audited)."""
    b: EntryIn = call.body
    entry = await call.container.billing_service().post(call.user, b.workspace_id, b.kind, b.amount, b.reason,
                                                        reference=b.reference, expires_at=b.expires_at, ip=call.ip)
    return _entry(entry)


@api.get("/api/v1/billing/usage", query=UsageQuery, response=BillingUsageOut, tags=TAGS, errors=[401, 404, 422])
async def usage(call: Call) -> BillingUsageOut:
    """Rated usage by environment, user, GPU model, day or resource kind (workspace viewers)."""
    q: UsageQuery = call.query
    out = await call.container.billing_service().usage(call.user, q.workspace_id, start=q.start, end=q.end, group_by=q.group_by)
    return BillingUsageOut(**out)


@api.get("/api/v1/billing/bills", query=WorkspaceQuery, response=BillListOut, tags=TAGS, errors=[401, 404, 422])
async def list_bills(call: Call) -> BillListOut:
    """The workspace's monthly bills of the last 12 months, newest first (draft for the running month)."""
    bills = await call.container.billing_service().bills(call.user, call.query.workspace_id)
    return BillListOut(items=[_bill(b, _currency(call)) for b in bills], total=len(bills))


@api.get("/api/v1/billing/bills/{period}", query=WorkspaceQuery, response=BillOut, tags=TAGS, errors=[401, 404, 422])
async def get_bill(call: Call) -> BillOut:
    """One month's bill with its line items (environment × resource)."""
    bill = await call.container.billing_service().bill(call.user, call.query.workspace_id, _period(call))
    return _bill(bill, _currency(call))


@api.get("/api/v1/billing/bills/{period}/csv", query=WorkspaceQuery, response=None, tags=TAGS, errors=[401, 404, 422])
async def get_bill_csv(call: Call) -> web.StreamResponse:
    """The bill as CSV (text/csv; amounts in minor units)."""
    period = _period(call)
    text = await call.container.billing_service().bill_csv(call.user, call.query.workspace_id, period)
    return web.Response(text=text, content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="bill-{period}.csv"'})


get_bill_csv.content_type = "text/csv"  # type: ignore[attr-defined]  # documented as such (openapi.py)


from remotegpu.domain.billing.plans import Plan  # noqa: E402
from remotegpu.entrypoints.http.schemas.billing import PlanCancelOut, PlanIn, PlanOut, PlanPatchIn  # noqa: E402

PLAN = "/api/v1/billing/plans/{plan_id}"


def _plan(p: Plan, currency: str) -> PlanOut:
    return PlanOut(id=p.id, workspace_id=p.workspace_id, gpu_model=p.gpu_model, gpu_count=p.gpu_count, term=p.term.value,
                   price=p.price, starts_at=p.starts_at, ends_at=p.ends_at, term_started_at=p.term_started_at,
                   auto_renew=p.auto_renew, status=p.status, terms=p.terms, currency=currency)


@api.get("/api/v1/billing/plans", query=WorkspaceQuery, response=Page[PlanOut], tags=TAGS, errors=[401, 404, 422])
async def list_plans(call: Call) -> Page[PlanOut]:
    """The workspace's plans, newest first (workspace viewers)."""
    plans = await call.container.plan_service().list(call.user, call.query.workspace_id)
    return Page[PlanOut](items=[_plan(p, _currency(call)) for p in plans], total=len(plans))


@api.post("/api/v1/billing/plans", body=PlanIn, response=PlanOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def buy_plan(call: Call) -> PlanOut:
    """Buy a monthly or yearly plan reserving `gpu_count` GPUs of `gpu_model` (workspace admins):
    the wallet is charged the term's price once (409 insufficient_funds)."""
    b: PlanIn = call.body
    plan = await call.container.plan_service().purchase(call.user, b.workspace_id, b.gpu_model, b.gpu_count, b.term, b.auto_renew)
    return _plan(plan, _currency(call))


@api.patch(PLAN, body=PlanPatchIn, response=PlanOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_plan(call: Call) -> PlanOut:
    """Turn automatic renewal on or off (workspace admins)."""
    plan = await call.container.plan_service().update(call.user, call.path("plan_id"), auto_renew=call.body.auto_renew)
    return _plan(plan, _currency(call))


@api.post(PLAN + "/renew", response=PlanOut, tags=TAGS, errors=[401, 403, 404, 409])
async def renew_plan(call: Call) -> PlanOut:
    """Pay the next term now (workspace admins)."""
    return _plan(await call.container.plan_service().renew(call.user, call.path("plan_id")), _currency(call))


@api.post(PLAN + "/cancel", response=PlanCancelOut, tags=TAGS, errors=[401, 403, 404, 409])
async def cancel_plan(call: Call) -> PlanCancelOut:
    """End it now; the unused part of the current term is refunded pro rata (workspace admins)."""
    plan, refund = await call.container.plan_service().cancel(call.user, call.path("plan_id"))
    return PlanCancelOut(plan=_plan(plan, _currency(call)), refund=refund)
