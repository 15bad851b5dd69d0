"""The payment port's only adapter: an offline transfer (bank transfer, cash, invoice)
that a platform admin saw arrive and confirms. Its reference (the transfer's id) books
it once. No card/online adapter exists: none can be tested here against a real test server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfflineReceipt:
    reference: str
    method: str = "offline"


class OfflineTransfers:
    async def confirm(self, workspace_id: str, amount: int, reference: str) -> OfflineReceipt:
        if amount <= 0:
            raise ValueError("a transfer is a positive amount")
        return OfflineReceipt(reference.strip()[:200])
