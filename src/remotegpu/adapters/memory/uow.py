"""The in-memory unit of work: same semantics as SqlUnitOfWork, no database."""

from __future__ import annotations

from remotegpu.adapters.memory.locks import SchedulingLockHolder
from remotegpu.adapters.memory.repositories import (
    InMemoryAllocationRepository,
    InMemoryApiTokenRepository,
    InMemoryAuditLog,
    InMemoryEnvironmentRepository,
    InMemoryHostRepository,
    InMemoryInviteRepository,
    InMemoryRefreshTokenRepository,
    InMemorySshKeyRepository,
    InMemoryUserRepository,
    InMemoryWorkspaceRepository,
)
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.workloads.memory_jobs import InMemoryInferenceServiceRepository, InMemoryTrainingJobRepository
from remotegpu.adapters.memory.transaction import Transaction


class InMemoryUnitOfWork:
    """Satisfies ``application.shared.ports.UnitOfWork``.

    Build one per use case from a shared store: ``lambda: InMemoryUnitOfWork(store)``.
    Leaving ``async with`` without ``commit()`` discards the changes.
    """

    def __init__(self, store: InMemoryStore):
        self._store = store
        self._tx: Transaction | None = None
        self._scheduling = SchedulingLockHolder()

    async def __aenter__(self) -> "InMemoryUnitOfWork":
        tx = self._tx = Transaction(self._store)
        self.users = InMemoryUserRepository(tx)
        self.api_tokens = InMemoryApiTokenRepository(tx)
        self.refresh_tokens = InMemoryRefreshTokenRepository(tx)
        self.ssh_keys = InMemorySshKeyRepository(tx)
        self.invites = InMemoryInviteRepository(tx)
        self.audit = InMemoryAuditLog(tx)
        self.workspaces = InMemoryWorkspaceRepository(tx)
        self.hosts = InMemoryHostRepository(tx)
        self.environments = InMemoryEnvironmentRepository(tx)
        self.allocations = InMemoryAllocationRepository(tx)
        self.training_jobs = InMemoryTrainingJobRepository(tx)
        self.inference_services = InMemoryInferenceServiceRepository(tx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._tx is not None:
                self._tx.discard()
            self._tx = None
        finally:
            self._scheduling.release()

    async def commit(self) -> None:
        try:
            self._active().commit()
        finally:
            # The transaction ended (committed, or refused with Conflict): like
            # pg_advisory_xact_lock, the scheduling lock ends with it.
            self._scheduling.release()

    async def rollback(self) -> None:
        try:
            self._active().discard()
        finally:
            self._scheduling.release()

    async def lock_scheduling(self) -> None:
        """Process-wide (per event loop) lock, released when the transaction ends:
        on commit, rollback, or leaving ``async with``."""
        self._active()
        await self._scheduling.acquire()

    def _active(self) -> Transaction:
        if self._tx is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._tx
