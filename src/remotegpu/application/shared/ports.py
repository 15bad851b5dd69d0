"""Cross-cutting ports: the unit of work, time, rate limits, background tasks."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

if TYPE_CHECKING:
    from remotegpu.application.identity.ports import (
        ApiTokenRepository,
        AuditLog,
        InviteRepository,
        RefreshTokenRepository,
        SshKeyRepository,
        UserRepository,
    )
    from remotegpu.application.environments.ports import AllocationRepository, EnvironmentRepository
    from remotegpu.application.fleet.ports import HostRepository
    from remotegpu.application.workspaces.ports import WorkspaceRepository
    from remotegpu.application.workloads.ports import InferenceServiceRepository, TrainingJobRepository


class UnitOfWork(Protocol):
    """One transaction per use case.

    ``async with uow:`` opens it; ``await uow.commit()`` makes the changes durable;
    leaving the block without commit rolls everything back.
    """

    users: "UserRepository"
    api_tokens: "ApiTokenRepository"
    refresh_tokens: "RefreshTokenRepository"
    ssh_keys: "SshKeyRepository"
    invites: "InviteRepository"
    audit: "AuditLog"
    workspaces: "WorkspaceRepository"
    hosts: "HostRepository"
    environments: "EnvironmentRepository"
    allocations: "AllocationRepository"
    training_jobs: "TrainingJobRepository"
    inference_services: "InferenceServiceRepository"

    async def lock_scheduling(self) -> None:
        """Serialise placement decisions until this unit of work ends.

        Placement reads the whole fleet and the workspace's usage, then writes
        allocations; two at once could both admit past a quota. PostgreSQL: a
        transaction-scoped advisory lock; SQLite and memory: a process-wide lock.
        Unique indexes on allocations remain the last line of defence.
        """
        ...

    async def __aenter__(self) -> "UnitOfWork": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class Clock(Protocol):
    def now(self) -> datetime: ...


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> int:
        """Count one attempt for ``key``; return 0 when allowed, else seconds until allowed again."""
        ...

    async def reset(self, key: str) -> None: ...


class TaskQueue(Protocol):
    async def enqueue(self, task: str, **kwargs: Any) -> None:
        """Run a registered background task (in-process or on a Dramatiq worker)."""
        ...


TaskHandler = Callable[..., Awaitable[None]]
