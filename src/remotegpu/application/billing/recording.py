"""Meter readings from observed environment state, written with the state change.

``MeteringUnitOfWork`` wraps the storage unit of work (innermost, like the webhook
events' wrapper) with a ``TappedEnvironments``: every status transition an environment
is saved with becomes a ``Reading`` (status, time, and what it holds then). Where the
storage unit of work offers ``meter_readings`` (SQL) they are written in the same
transaction as the transition — a crash loses neither or both; otherwise (the in-memory
store) they go to the billing store right after the commit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from remotegpu.application.billing.ports import BillingStore
from remotegpu.application.shared.environment_tap import TappedEnvironments
from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.environments.models import Environment

log = logging.getLogger(__name__)


def readings_of(env: Environment) -> list[Reading]:
    return [
        Reading(
            environment_id=env.id, workspace_id=env.workspace_id, owner_id=env.owner_id, at=event.at,
            status=event.to_status.value, gpu_model=env.gpu_model or "", gpu_count=env.gpu_count, with_gpu=env.with_gpu,
            cpu_cores=env.cpu_cores, memory_gib=env.memory_gib, disk_gib=env.disk_gib, seq=i,
        )
        for i, event in enumerate(env.pending_events)
    ]


class MeteringUnitOfWork:
    def __init__(self, inner: UnitOfWork, store: BillingStore):
        self._inner = inner
        self._store = store
        self._noted: list[Reading] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "MeteringUnitOfWork":
        await self._inner.__aenter__()
        self._noted = []
        self.environments = TappedEnvironments(self._inner.environments, lambda env: self._noted.extend(readings_of(env)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._noted = []
        await self._inner.__aexit__(*exc)

    async def rollback(self) -> None:
        self._noted = []
        await self._inner.rollback()

    async def commit(self) -> None:
        noted, self._noted = self._noted, []
        same_tx = getattr(self._inner, "meter_readings", None)
        if noted and same_tx is not None:
            await same_tx.add(_sequenced(noted))
        await self._inner.commit()
        if noted and same_tx is None:
            try:
                async with self._store.transaction() as tx:
                    await tx.add_readings(_sequenced(noted))
                    await tx.commit()
            except Exception:  # noqa: BLE001 - the change is committed; the next transition re-reads its state
                log.exception("recording meter readings failed")


def _sequenced(readings: list[Reading]) -> list[Reading]:
    """Order of readings at the same instant: this clock's nanoseconds when recorded, plus
    their order in the transaction (time alone does not order two transactions of one
    instant under a frozen clock; the recording instants do)."""
    base = time.time_ns() // 1000 * 1000  # microseconds × 1000: fits a BIGINT
    return [replace(r, seq=base + i) for i, r in enumerate(readings)]
