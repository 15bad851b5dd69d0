"""Periodic housekeeping; run by the Dramatiq worker, or in-process in embedded mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory


@dataclass
class Maintenance:
    uow: UnitOfWorkFactory
    clock: Clock
    audit_retention: timedelta = timedelta(days=365)

    async def purge_expired_refresh_tokens(self) -> int:
        async with self.uow() as uow:
            n = await uow.refresh_tokens.delete_expired(self.clock.now())
            await uow.commit()
        return n

    async def purge_old_audit_events(self) -> int:
        async with self.uow() as uow:
            n = await uow.audit.delete_before(self.clock.now() - self.audit_retention)
            await uow.commit()
        return n
