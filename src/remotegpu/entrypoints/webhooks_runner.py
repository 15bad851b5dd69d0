"""The webhook dispatcher inside the server process: sends what is due, every second,
and at once when an event was published. Deliveries are rows, so several servers may
run it side by side (claims are leased) and a restart loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import AsyncIterator

from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.webhooks")
PURGE_EVERY_SECONDS = 3600  # the delivery log's retention is checked hourly


def webhooks_ctx(container: Container):
    async def ctx(app) -> AsyncIterator[None]:
        service = container.webhook_service()
        interval = container.settings().webhook_dispatch_interval_seconds

        async def loop() -> None:
            next_purge = 0.0
            while True:
                try:
                    await service.dispatch_due()
                    if time.monotonic() >= next_purge:
                        next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                        await service.purge_log()
                except Exception:  # noqa: BLE001 - a failed round must not end the loop
                    log.exception("webhook dispatch failed")
                await service.wait_for_work(interval)

        task = asyncio.create_task(loop(), name="webhooks")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await container.webhook_sender().close()

    return ctx
