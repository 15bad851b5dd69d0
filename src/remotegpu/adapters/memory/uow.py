"""The in-memory unit of work: same semantics as SqlUnitOfWork, no database."""

from __future__ import annotations

from remotegpu.adapters.memory.repositories import (
    InMemoryApiTokenRepository,
    InMemoryAuditLog,
    InMemoryInviteRepository,
    InMemoryRefreshTokenRepository,
    InMemorySshKeyRepository,
    InMemoryUserRepository,
    InMemoryWorkspaceRepository,
)
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.transaction import Transaction


class InMemoryUnitOfWork:
    """Satisfies ``application.shared.ports.UnitOfWork``.

    Build one per use case from a shared store: ``lambda: InMemoryUnitOfWork(store)``.
    Leaving ``async with`` without ``commit()`` discards the changes.
    """

    def __init__(self, store: InMemoryStore):
        self._store = store
        self._tx: Transaction | None = None

    async def __aenter__(self) -> "InMemoryUnitOfWork":
        tx = self._tx = Transaction(self._store)
        self.users = InMemoryUserRepository(tx)
        self.api_tokens = InMemoryApiTokenRepository(tx)
        self.refresh_tokens = InMemoryRefreshTokenRepository(tx)
        self.ssh_keys = InMemorySshKeyRepository(tx)
        self.invites = InMemoryInviteRepository(tx)
        self.audit = InMemoryAuditLog(tx)
        self.workspaces = InMemoryWorkspaceRepository(tx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tx is not None:
            self._tx.discard()
        self._tx = None

    async def commit(self) -> None:
        self._active().commit()

    async def rollback(self) -> None:
        self._active().discard()

    def _active(self) -> Transaction:
        if self._tx is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._tx
