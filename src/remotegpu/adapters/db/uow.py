"""The SQL unit of work: one AsyncSession, one transaction, per ``async with``."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db.repositories._base import conflict_from
from remotegpu.adapters.db.repositories.environments import SqlAllocationRepository, SqlEnvironmentRepository
from remotegpu.adapters.db.repositories.fleet import SqlHostRepository
from remotegpu.adapters.db.repositories.identity import (
    SqlApiTokenRepository,
    SqlAuditLog,
    SqlInviteRepository,
    SqlRefreshTokenRepository,
    SqlSshKeyRepository,
    SqlUserRepository,
)
from remotegpu.adapters.db.repositories.workspaces import SqlWorkspaceRepository
from remotegpu.adapters.db.repositories.workloads import SqlInferenceServiceRepository, SqlTrainingJobRepository
from remotegpu.adapters.memory.locks import SchedulingLockHolder
from remotegpu.adapters.billing.sql_store import SqlMeterReadings

#: Key of the PostgreSQL advisory lock that serialises placement ("RGPUSCHD" in ASCII).
SCHEDULING_LOCK_KEY = 0x5247505553434844


class SqlUnitOfWork:
    """Satisfies ``application.shared.ports.UnitOfWork``.

    Repositories exist only inside ``async with``. Leaving the block without
    ``commit()`` rolls back. After a ``Conflict`` from a repository the transaction
    is broken on PostgreSQL: leave the block, then retry with a new one if sensible.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._session_factory = session_factory
        self._session: AsyncSession | None = None
        self._scheduling = SchedulingLockHolder()  # SQLite: the process-wide lock

    async def __aenter__(self) -> "SqlUnitOfWork":
        session = self._session = self._session_factory()
        self.users = SqlUserRepository(session)
        self.api_tokens = SqlApiTokenRepository(session)
        self.refresh_tokens = SqlRefreshTokenRepository(session)
        self.ssh_keys = SqlSshKeyRepository(session)
        self.invites = SqlInviteRepository(session)
        self.audit = SqlAuditLog(session)
        self.workspaces = SqlWorkspaceRepository(session)
        self.hosts = SqlHostRepository(session)
        self.environments = SqlEnvironmentRepository(session)
        self.allocations = SqlAllocationRepository(session)
        self.meter_readings = SqlMeterReadings(session)  # billing: readings in the state change's transaction
        self.training_jobs = SqlTrainingJobRepository(session)
        self.inference_services = SqlInferenceServiceRepository(session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        try:
            if session is None:
                return
            try:
                await session.rollback()  # a no-op after commit
            finally:
                await session.close()
        finally:
            self._scheduling.release()

    async def commit(self) -> None:
        try:
            await self._active().commit()
        except IntegrityError as exc:  # deferred constraints surface here
            raise conflict_from(exc) from exc
        finally:
            self._scheduling.release()

    async def rollback(self) -> None:
        try:
            await self._active().rollback()
        finally:
            self._scheduling.release()

    async def lock_scheduling(self) -> None:
        """Serialise placement until this transaction ends (commit, rollback or exit).

        PostgreSQL: ``pg_advisory_xact_lock`` — across every server process, freed by
        the database when the transaction ends. SQLite (one process): an asyncio lock
        per event loop, released by this unit of work when its transaction ends. Call it
        first, before any write: on SQLite a writer waiting for this lock while holding
        the database's write lock would stall the holder (until busy_timeout).
        """
        session = self._active()
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULING_LOCK_KEY})
        else:
            await self._scheduling.acquire()

    def _active(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._session
