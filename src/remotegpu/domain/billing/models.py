"""Stored forms: a rated segment, a wallet's settings, a bill."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import Segment


def period_of(t: datetime) -> str:
    return _period(t.year, t.month)


@lru_cache(maxsize=1024)
def _period(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


@dataclass(frozen=True)
class RatedSegment:
    segment: Segment
    rated_until: datetime
    amount: int  # segment.amount(rated_until)
    charged: int  # what the ledger was charged for it so far

    @property
    def period(self) -> str:
        return period_of(self.segment.start)


DEFAULT_WARN_BELOW = 10_000  # minor units (100.00): members are warned under this balance


@dataclass
class Wallet:
    workspace_id: str
    warn_below: int = DEFAULT_WARN_BELOW
    warned: bool = False  # the low-balance warning was sent (reset when the balance is back over)
    arrears_since: datetime | None = None  # the balance reached zero then (None: not in arrears)
    disk_warnings: int = 0  # disk-deletion warnings sent in this arrears
    budget_monthly: int | None = None  # minor units per month; None: no budget
    budget_hard_stop: bool = False
    budget_notified: str = ""  # "YYYY-MM:pct" of the last budget notice


@dataclass(frozen=True)
class BillLine:
    environment_id: str
    kind: str
    model: str
    quantity: int
    unit_price: int
    seconds: int
    amount: int


@dataclass
class Bill:
    workspace_id: str
    period: str
    status: str  # "draft" while its month runs, "finalized" after (immutable)
    total: int
    charged: int  # the ledger's charges for this period (equals total once every segment is rated)
    lines: list[BillLine] = field(default_factory=list)
    finalized_at: datetime | None = None
    #: The month's ledger entries other than usage and money in: admins' adjustments, refunds,
    #: credit grants and expiries (``ADJUSTING``). A month's entries are posted in that month
    #: (a correction of a final bill is posted in the month it is made), so a finalized bill's
    #: adjustments never change either.
    adjustments: list[LedgerEntry] = field(default_factory=list)

    @property
    def adjustments_total(self) -> int:
        """Their sum, signed as in the ledger (positive: in the workspace's favour)."""
        return sum(e.amount for e in self.adjustments)

    @property
    def net(self) -> int:
        """What the month cost after adjustments: usage total less what they gave back."""
        return self.total - self.adjustments_total


#: Ledger entry kinds shown on a bill as adjustments (not top-ups, usage charges or plan purchases).
ADJUSTING = (EntryKind.ADJUSTMENT, EntryKind.REFUND, EntryKind.CREDIT, EntryKind.CREDIT_EXPIRY)


def bill_lines(segments: list[RatedSegment], until: datetime) -> list[BillLine]:
    """One line per environment × resource (× unit price): quantities, seconds, amounts."""
    acc: dict[tuple, list[int]] = {}
    for rs in segments:
        g = rs.segment
        key = (g.environment_id, g.kind.value, g.model, g.quantity, g.unit_price)
        line = acc.setdefault(key, [0, 0])
        line[0] += g.seconds(rs.rated_until)
        line[1] += rs.amount
    return [BillLine(e, k, m, q, p, s, a) for (e, k, m, q, p), (s, a) in sorted(acc.items())]
