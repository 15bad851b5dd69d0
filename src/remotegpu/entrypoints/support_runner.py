"""The support automations in embedded mode (no Redis): every REMOTEGPU_SUPPORT_SWEEP_INTERVAL_SECONDS,
close solved tickets past their days, remind and auto-solve pending ones, raise SLA alerts.
With Redis the server does not run them: `remotegpu worker`'s scheduler enqueues the
``support.sweep`` task on the same cadence and a Dramatiq worker runs it.
Several servers may run it side by side: ticket saves are versioned and each alert's
notification has a dedupe key, so nothing happens twice."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import AsyncIterator

from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.support")


def support_ctx(container: Container):
    async def ctx(app) -> AsyncIterator[None]:
        service = container.ticket_service()
        interval = container.settings().support_sweep_interval_seconds

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await service.sweep()
                except Exception:  # noqa: BLE001 - a failed round must not end the loop
                    log.exception("support automations failed")

        task = asyncio.create_task(loop(), name="support")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return ctx
