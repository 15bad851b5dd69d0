"""Plans (包月/包年): N GPUs of one model reserved for a workspace for a month or a year,
prepaid at the plan price (``gpu_month`` / ``gpu_year`` prices × N), never metered.

* **Purchase** charges the wallet once (a ``plan`` ledger entry); a renewal charges the
  next term once (automatically at the end when ``auto_renew`` and the balance allows,
  or by hand); otherwise the plan expires at its end.
* **Cancellation** ends it now and refunds the unused part of the current term, pro rata
  to the second and rounded **down** to the minor unit: ``price × remaining / term``.
* **Reservation**: the scheduler never hands another workspace GPUs of that model that
  would leave fewer free than the subscriber's unused reservation (reserved GPUs are not
  lent to pay-as-you-go at all: nothing could reclaim them from a running environment).
* **Coverage**: the subscriber's GPU usage of that model is covered (price 0, price id
  ``plan:<id>``) up to N GPUs at any instant. Coverage is decided when a GPU segment
  starts (its environment starts, or a cut: a price change, a month start, the plan's
  own start or end): covered if the plan is in force then and the workspace's other
  covered GPUs of that model in use then leave room for it. Beyond N, or outside the
  plan's term, usage is metered as pay-as-you-go.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.billing.prices import ResourceKind


class PlanTerm(str, Enum):
    MONTH = "month"
    YEAR = "year"

    @property
    def price_kind(self) -> ResourceKind:
        return ResourceKind.GPU_MONTH if self is PlanTerm.MONTH else ResourceKind.GPU_YEAR


def add_term(start: datetime, term: PlanTerm) -> datetime:
    """The same day and time a month / a year later (clamped to the month's last day)."""
    months = 1 if term is PlanTerm.MONTH else 12
    year, month = start.year + (start.month - 1 + months) // 12, (start.month - 1 + months) % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


@dataclass
class Plan:
    id: str
    workspace_id: str
    gpu_model: str
    gpu_count: int
    term: PlanTerm
    price: int  # minor units charged per term (unit price × gpu_count)
    starts_at: datetime
    ends_at: datetime  # the current term's end (a cancellation: when it was cancelled)
    term_started_at: datetime  # the current term's start
    auto_renew: bool = False
    status: str = "active"  # active, cancelled, expired
    created_by: str = ""
    terms: int = 1  # terms paid so far

    def in_force(self, t: datetime) -> bool:
        return self.starts_at <= t < self.ends_at

    def refund_at(self, now: datetime) -> int:
        """The unused part of the current term, pro rata to the second, rounded down."""
        if self.status != "active" or now >= self.ends_at:
            return 0
        term = int((self.ends_at - self.term_started_at).total_seconds())
        left = int((self.ends_at - max(now, self.term_started_at)).total_seconds())
        return self.price * left // term if term > 0 else 0


@dataclass
class PlanCover:
    """Which GPU segments plans cover (see the module doc), deterministically.

    ``covered``: (workspace, model) → [(environment, start, end|None, gpus)] of segments
    already covered (stored ones, and those decided earlier in this pass)."""

    plans: list[Plan]
    covered: dict[tuple[str, str], list[tuple[str, datetime, datetime | None, int]]] = field(default_factory=dict)

    def _of(self, workspace_id: str, model: str) -> list[Plan]:
        return [p for p in self.plans if p.workspace_id == workspace_id and p.gpu_model == model]

    def cuts(self, workspace_id: str, model: str, after: datetime, before: datetime) -> list[datetime]:
        out = []
        for p in self._of(workspace_id, model):
            out.extend(t for t in (p.starts_at, p.ends_at) if after < t < before)
        return out

    def cover(self, workspace_id: str, environment_id: str, model: str, gpus: int, start: datetime) -> Plan | None:
        for p in sorted(self._of(workspace_id, model), key=lambda p: (p.starts_at, p.id)):
            if not p.in_force(start):
                continue
            in_use = sum(n for env, s, e, n in self.covered.get((workspace_id, model), [])
                         if env != environment_id and s <= start and (e is None or start < e))
            if in_use + gpus <= p.gpu_count:
                return p
        return None

    def note(self, workspace_id: str, model: str, environment_id: str, start: datetime, end: datetime | None, gpus: int) -> None:
        items = self.covered.setdefault((workspace_id, model), [])
        items[:] = [x for x in items if not (x[0] == environment_id and x[1] == start)]
        items.append((environment_id, start, end, gpus))
