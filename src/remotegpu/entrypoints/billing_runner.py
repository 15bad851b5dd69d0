"""The metering pass inside every server process: every REMOTEGPU_BILLING_TICK_SECONDS
(60) open segments are rated to now and the ledger charged; with billing enabled the
money rules follow (warnings, stops at zero, disks after long arrears, budgets). Hourly:
expired credit grants and last month's bills are finalized. Passes are serialised across
servers (BillingTx.lock) and idempotent, so several servers may run this side by side."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import AsyncIterator

from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.billing")
HOURLY = 3600.0


def billing_ctx(container: Container):
    async def ctx(app) -> AsyncIterator[None]:
        metering = container.metering()
        billing = container.billing_service()
        interval = container.settings().billing_tick_seconds

        async def loop() -> None:
            next_hourly = 0.0
            while True:
                try:
                    await metering.run()
                    if time.monotonic() >= next_hourly:
                        next_hourly = time.monotonic() + HOURLY
                        await billing.expire_credits()
                        await billing.finalize()
                except Exception:  # noqa: BLE001 - a failed pass must not end the loop; the next one catches up
                    log.exception("metering pass failed")
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name="billing")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return ctx
