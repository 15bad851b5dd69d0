"""What billing needs from storage: one transaction object per unit of billing work."""

from __future__ import annotations

from datetime import datetime
from typing import AsyncContextManager, Protocol

from remotegpu.domain.billing.ledger import EntryKind, LedgerEntry
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.billing.models import Bill, BillLine, RatedSegment, Wallet
from remotegpu.domain.billing.plans import Plan
from remotegpu.domain.billing.prices import Price


class BillingTx(Protocol):
    async def lock(self) -> None:
        """Serialise metering passes across processes until this transaction ends."""

    async def prices(self) -> list[Price]: ...
    async def add_price(self, price: Price) -> None: ...

    async def add_readings(self, readings: list[Reading]) -> None:
        """Store readings and mark their environments as to be metered again."""

    async def to_meter(self) -> list[tuple[str, int, bool]]:
        """(environment id, version, dirty) of environments with new readings (dirty) or open segments."""

    async def open_segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]: ...

    async def readings(self, environment_ids: list[str]) -> dict[str, list[Reading]]: ...
    async def segments(self, environment_ids: list[str]) -> dict[str, list[RatedSegment]]: ...
    async def save_segments(self, upserts: list[RatedSegment], deleted_keys: list[str],
                            new_keys: frozenset[str] = frozenset()) -> None:
        """Upsert by key, delete ``deleted_keys``. ``new_keys``: keys of ``upserts`` known not
        to be stored (the caller read every segment of their environments under the
        metering lock): a store may insert those without a conflict check."""
    async def rate_open(self, rated: list[RatedSegment]) -> None:
        """Update rated_until, amount and charged of stored open segments."""

    async def mark_metered(self, marks: list[tuple[str, int, int]]) -> None:
        """(environment id, version seen, open segments) — a newer version stays to be metered."""

    async def add_entries(self, entries: list[LedgerEntry]) -> None:
        """Append; an entry whose reference exists already is a Conflict."""

    async def has_reference(self, reference: str) -> bool: ...
    async def balance(self, workspace_id: str) -> int: ...
    async def balances(self, workspace_ids: list[str] | None = None) -> dict[str, int]:
        """Balance of every workspace with a ledger or wallet (or of those named)."""

    async def entries(self, workspace_id: str, *, limit: int, offset: int) -> tuple[list[LedgerEntry], int]: ...
    async def all_entries(self, workspace_id: str) -> list[LedgerEntry]: ...
    async def period_charges(self, workspace_id: str, period: str) -> int:
        """Sum of the charges (negative) recorded for usage in that month."""

    async def period_entries(self, workspace_id: str, period: str, kinds: tuple[EntryKind, ...]) -> list[LedgerEntry]:
        """The workspace's entries of these kinds that belong to that month, oldest first."""

    async def wallet(self, workspace_id: str) -> Wallet: ...
    async def wallets(self) -> list[Wallet]: ...
    async def save_wallet(self, wallet: Wallet) -> None: ...
    async def usage(self, workspace_id: str, start: datetime, end: datetime) -> list[RatedSegment]:
        """Segments of the workspace starting in [start, end)."""

    async def period_segments(self, workspace_id: str, period: str) -> list[RatedSegment]: ...
    async def bill(self, workspace_id: str, period: str) -> Bill | None: ...
    async def add_bill(self, bill: Bill) -> None: ...
    # A whole month at once (bill finalization, set-based):
    async def period_lines(self, period: str) -> dict[str, list[BillLine]]: ...
    async def period_charges_all(self, period: str) -> dict[str, int]: ...
    async def open_workspaces(self, period: str) -> set[str]: ...
    async def finalized(self, period: str) -> set[str]: ...
    async def add_bills(self, bills: list[Bill]) -> None: ...
    async def plans(self, workspace_id: str | None = None) -> list[Plan]: ...
    async def save_plan(self, plan: Plan) -> None: ...
    async def covered_segments(self) -> list[RatedSegment]:
        """Segments a plan covers (price id ``plan:…``)."""

    async def commit(self) -> None: ...


class BillingStore(Protocol):
    def transaction(self) -> AsyncContextManager[BillingTx]: ...


class PaymentReceipt(Protocol):
    reference: str  # the provider's id of the payment: a top-up is booked once per reference
    method: str


class PaymentGateway(Protocol):
    """How money comes in. Only an offline adapter exists (an admin confirms a received
    transfer): no card/online adapter, as none can be tested against a real test server here."""

    async def confirm(self, workspace_id: str, amount: int, reference: str) -> PaymentReceipt: ...
