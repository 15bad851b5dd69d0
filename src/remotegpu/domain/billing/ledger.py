"""A workspace's wallet: an append-only ledger; the balance is the sum of its entries.

Entries are never changed or removed. Charges are negative, money in is positive. A
correction is a new entry (adjustment, refund), never an edit. ``reference`` makes an
entry idempotent: the ledger holds at most one entry per reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import InvalidInput


class EntryKind(str, Enum):
    TOPUP = "topup"  # money received (payment port: an admin-confirmed transfer)
    CHARGE = "charge"  # metered usage, per workspace and month (negative)
    PLAN = "plan"  # a plan's prepaid price (negative)
    REFUND = "refund"  # money given back (a cancelled plan's unused part: positive)
    ADJUSTMENT = "adjustment"  # an admin's correction, with its reason (either sign)
    CREDIT = "credit"  # a credit grant (positive), optionally expiring
    CREDIT_EXPIRY = "credit_expiry"  # the unused part of an expired grant (negative)


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    workspace_id: str
    kind: EntryKind
    amount: int  # minor units, signed
    at: datetime
    reason: str = ""
    actor_id: str | None = None  # who asked (admins); None: the platform
    reference: str | None = None  # idempotency key (a charge: "charge:<workspace>:<month>:<tick>")
    period: str = ""  # "YYYY-MM" the entry belongs to on bills (charges: the usage's month)
    expires_at: datetime | None = None  # credit grants only

    def __post_init__(self) -> None:
        sign_ok = {
            EntryKind.TOPUP: self.amount > 0, EntryKind.CREDIT: self.amount > 0, EntryKind.REFUND: self.amount > 0,
            EntryKind.CHARGE: True, EntryKind.PLAN: self.amount < 0, EntryKind.CREDIT_EXPIRY: self.amount < 0,
            EntryKind.ADJUSTMENT: self.amount != 0,
        }[self.kind]
        if not sign_ok:
            raise InvalidInput(f"a {self.kind.value} of {self.amount} is not allowed", details={"field": "amount"})
        if self.kind in (EntryKind.TOPUP, EntryKind.ADJUSTMENT, EntryKind.CREDIT) and self.actor_id and not self.reason.strip():
            raise InvalidInput("a reason is required", details={"field": "reason"})


def balance(entries: list[LedgerEntry]) -> int:
    return sum(e.amount for e in entries)


def unused_credit(grant: LedgerEntry, entries: list[LedgerEntry]) -> int:
    """What is left of a credit grant when it expires: credit is spent before money, so
    it is the grant less what was charged since it was granted, never more than the
    balance (and never below zero)."""
    spent = -sum(e.amount for e in entries if e.at >= grant.at and e.kind in (EntryKind.CHARGE, EntryKind.PLAN))
    return max(0, min(grant.amount - max(0, spent), balance(entries)))
