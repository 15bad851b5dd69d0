from __future__ import annotations

import asyncio
import logging
from typing import Any

from remotegpu.application.shared.ports import TaskHandler

log = logging.getLogger(__name__)


class InlineTaskQueue:
    """Embedded mode: run tasks on this process's event loop, in the background."""

    def __init__(self, handlers: dict[str, TaskHandler]):
        self._handlers = handlers
        self._pending: set[asyncio.Task] = set()

    async def enqueue(self, task: str, **kwargs: Any) -> None:
        handler = self._handlers[task]
        t = asyncio.create_task(self._run(task, handler, kwargs))
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def _run(self, name: str, handler: TaskHandler, kwargs: dict) -> None:
        try:
            await handler(**kwargs)
        except Exception:
            log.exception("background task failed", extra={"task": name})

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
