"""The SQL unit of work: one AsyncSession, one transaction, per ``async with``."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db.repositories._base import conflict_from
from remotegpu.adapters.db.repositories.identity import (
    SqlApiTokenRepository,
    SqlAuditLog,
    SqlInviteRepository,
    SqlRefreshTokenRepository,
    SqlSshKeyRepository,
    SqlUserRepository,
)
from remotegpu.adapters.db.repositories.workspaces import SqlWorkspaceRepository


class SqlUnitOfWork:
    """Satisfies ``application.shared.ports.UnitOfWork``.

    Repositories exist only inside ``async with``. Leaving the block without
    ``commit()`` rolls back. After a ``Conflict`` from a repository the transaction
    is broken on PostgreSQL: leave the block, then retry with a new one if sensible.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._session_factory = session_factory
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> "SqlUnitOfWork":
        session = self._session = self._session_factory()
        self.users = SqlUserRepository(session)
        self.api_tokens = SqlApiTokenRepository(session)
        self.refresh_tokens = SqlRefreshTokenRepository(session)
        self.ssh_keys = SqlSshKeyRepository(session)
        self.invites = SqlInviteRepository(session)
        self.audit = SqlAuditLog(session)
        self.workspaces = SqlWorkspaceRepository(session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            await session.rollback()  # a no-op after commit
        finally:
            await session.close()

    async def commit(self) -> None:
        try:
            await self._active().commit()
        except IntegrityError as exc:  # deferred constraints surface here
            raise conflict_from(exc) from exc

    async def rollback(self) -> None:
        await self._active().rollback()

    def _active(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._session
