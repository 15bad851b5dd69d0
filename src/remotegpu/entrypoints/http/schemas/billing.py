from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict

MINOR = "integer minor units of the currency (cents, fen)"
KINDS = Literal["gpu", "cpu", "memory", "disk", "nogpu", "gpu_month", "gpu_year"]


class PriceIn(Strict):
    kind: KINDS = Field(description="gpu (per GPU-hour of `model`), cpu (core-hour), memory (GiB-hour), disk (GiB-day), "
                                    "nogpu (hour of an environment started without its GPUs), gpu_month / gpu_year "
                                    "(one GPU of `model` in a monthly / yearly plan)")
    model: str = Field("", max_length=200, description="the GPU model (gpu, gpu_month, gpu_year prices only)")
    unit_price: int = Field(ge=0, le=10**12, description=MINOR + " per unit per period")
    effective_from: datetime | None = Field(None, description="default now; never in the past (metered usage keeps its price)")


class PriceQuery(Strict):
    history: bool = Field(False, description="every price ever set, not only those in force now")


class PriceOut(BaseModel):
    id: str
    kind: str
    model: str
    unit_price: int = Field(description=MINOR)
    period: Literal["hour", "day", "month", "year"]
    effective_from: datetime
    currency: str


class EstimateQuery(Strict):
    gpu_model: str | None = Field(None, max_length=200)
    gpu_count: int = Field(0, ge=0, le=8)
    cpu_cores: int = Field(1, ge=1, le=4096)
    memory_gib: int = Field(1, ge=1, le=65536)
    disk_gib: int = Field(0, ge=0, le=4096)


class EstimateOut(BaseModel):
    hourly_price: int = Field(description=MINOR + " per hour now (disk: a 24th of its daily price), rounded once")
    currency: str


class WorkspaceQuery(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)


class WalletOut(BaseModel):
    workspace_id: str
    balance: int = Field(description=MINOR + ": the sum of the ledger")
    currency: str
    month_charges: int = Field(description="charged for this month's usage so far")
    hourly_burn: int = Field(description="what its resources held now cost per hour")
    warn_below: int
    in_arrears_since: datetime | None
    budget_monthly: int | None
    budget_hard_stop: bool
    billing_enabled: bool = Field(description="false: nothing is refused or stopped for money on this server")


class WalletPatchIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    warn_below: int | None = Field(None, ge=0, le=10**12, description="members are notified under this balance")
    budget_monthly: int | None = Field(None, ge=0, le=10**12, description="notices at 50/80/100 %; 0 removes the budget")
    budget_hard_stop: bool | None = Field(None, description="stop running environments at 100 % of the budget")


class EntryIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    kind: Literal["topup", "adjustment", "credit", "refund"]
    amount: int = Field(ge=-10**12, le=10**12, description=MINOR + "; adjustments may be negative")
    reason: str = Field(min_length=1, max_length=500)
    reference: str | None = Field(None, max_length=200, description="topup: the transfer's id, booked once")
    expires_at: datetime | None = Field(None, description="credit grants: the unused part expires then")


class EntryListQuery(PageQuery):
    workspace_id: str = Field(min_length=1, max_length=36)


class EntryOut(BaseModel):
    id: str
    workspace_id: str
    kind: str
    amount: int = Field(description=MINOR + ", signed (charges negative)")
    at: datetime
    reason: str
    actor_id: str | None
    period: str
    expires_at: datetime | None


class UsageQuery(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    start: datetime | None = Field(None, description="default: this month's start")
    end: datetime | None = Field(None, description="default: now")
    group_by: Literal["environment", "user", "gpu_model", "day", "kind", "job"] = Field(
        "day", description="environment: each environment and each training-job node (<job>.a<attempt>.n<rank>); "
        "job: training jobs' nodes summed per job")


class UsageGroupOut(BaseModel):
    key: str
    amount: int
    seconds: int


class BillingUsageOut(BaseModel):
    workspace_id: str
    start: datetime
    end: datetime
    group_by: str
    currency: str
    total: int
    groups: list[UsageGroupOut]


class BillLineOut(BaseModel):
    environment_id: str
    kind: str
    model: str
    quantity: int
    unit_price: int
    seconds: int
    amount: int


class BillAdjustmentOut(BaseModel):
    entry_id: str = Field(description="the ledger entry")
    kind: Literal["adjustment", "refund", "credit", "credit_expiry"]
    amount: int = Field(description=MINOR + ", signed as in the ledger (positive: in the workspace's favour)")
    at: datetime
    reason: str
    actor_id: str | None = Field(description="the admin who posted it (null: the platform, e.g. a correction)")


class BillOut(BaseModel):
    workspace_id: str
    period: str = Field(description="YYYY-MM")
    status: Literal["draft", "finalized"]
    total: int = Field(description="sum of the lines")
    charged: int = Field(description="the ledger's charges for this month's usage (equal to total once rated)")
    currency: str
    finalized_at: datetime | None
    lines: list[BillLineOut]
    adjustments: list[BillAdjustmentOut] = Field(
        description="the month's adjustments, refunds and credits (not usage): ledger entries with who and why")
    adjustments_total: int = Field(description="their sum (positive: in the workspace's favour)")
    net: int = Field(description="total less adjustments_total")


class BillListOut(BaseModel):
    items: list[BillOut]
    total: int


class PlanIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    gpu_model: str = Field(min_length=1, max_length=200)
    gpu_count: int = Field(ge=1, le=64)
    term: Literal["month", "year"]
    auto_renew: bool = False


class PlanPatchIn(Strict):
    auto_renew: bool


class PlanOut(BaseModel):
    id: str
    workspace_id: str
    gpu_model: str
    gpu_count: int
    term: str
    price: int = Field(description=MINOR + " paid per term")
    starts_at: datetime
    ends_at: datetime = Field(description="the current term's end (a cancelled plan: when it was cancelled)")
    term_started_at: datetime
    auto_renew: bool
    status: Literal["active", "cancelled", "expired"]
    terms: int
    currency: str


class PlanCancelOut(BaseModel):
    plan: PlanOut
    refund: int = Field(description=MINOR + " refunded: the unused part of the term, pro rata, rounded down")
