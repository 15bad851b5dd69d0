"""Pay-as-you-go: a GPU environment is created or started only with a positive balance."""

from __future__ import annotations

from dataclasses import dataclass

from remotegpu.application.billing.ports import BillingStore
from remotegpu.application.shared.ports import Clock
from remotegpu.domain.billing.money import format_minor
from remotegpu.domain.billing.prices import PriceBook
from remotegpu.domain.shared.errors import Conflict


@dataclass
class FundsCheck:
    store: BillingStore
    clock: Clock
    currency: str = "CNY"

    async def check(self, workspace_id: str, *, gpu_model: str | None, gpu_count: int, cpu_cores: int, memory_gib: int,
                    disk_gib: int = 0) -> None:
        async with self.store.transaction() as tx:
            balance = await tx.balance(workspace_id)
            if balance > 0:
                return
            book = PriceBook(await tx.prices())
        hourly = book.hourly(self.clock.now(), gpu_model=gpu_model, gpu_count=gpu_count, cpu_cores=cpu_cores,
                             memory_gib=memory_gib, disk_gib=disk_gib)
        raise Conflict(
            f"the workspace's balance is {format_minor(balance, self.currency)}: top up to run a GPU environment "
            f"({format_minor(hourly, self.currency)} per hour)",
            code="insufficient_funds",
            details={"balance": balance, "hourly_price": hourly, "currency": self.currency},
        )
