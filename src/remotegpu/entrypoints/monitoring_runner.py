"""Alert evaluation (every REMOTEGPU_ALERT_EVAL_SECONDS) and metrics compaction (every
minute) inside each server process. Both are idempotent across replicas (see
application/monitoring/alerts.py and adapters/monitoring/sql_store.py); the Dramatiq
worker runs the same tasks on its maintenance schedule."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import AsyncIterator

from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.monitoring")
COMPACT_EVERY_SECONDS = 60.0


def monitoring_ctx(container: Container):
    async def ctx(app) -> AsyncIterator[None]:
        interval = container.settings().alert_eval_seconds

        async def loop() -> None:
            next_compact = time.monotonic() + COMPACT_EVERY_SECONDS
            while True:
                await asyncio.sleep(interval)
                try:
                    await container.alert_service().evaluate()
                    if time.monotonic() >= next_compact:
                        next_compact = time.monotonic() + COMPACT_EVERY_SECONDS
                        await container.metrics_store().compact(time.time())
                except Exception:  # noqa: BLE001 - a failed round must not end the loop
                    log.exception("monitoring round failed")

        task = asyncio.create_task(loop(), name="monitoring")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return ctx
