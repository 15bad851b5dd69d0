"""Meter readings from observed environment state (and training-job nodes), written with the state change.

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
from datetime import datetime, timezone
from typing import Any, Callable

from remotegpu.application.billing.ports import BillingStore
from remotegpu.application.shared.environment_tap import TappedEnvironments
from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.environments.models import Environment
from remotegpu.domain.workloads.models import TrainingJob, node_id

log = logging.getLogger(__name__)


def node_reading(job: TrainingJob, subject: str, status: str, at: datetime) -> Reading:
    """A training-job node as a metered subject (its id: the node's, ``<job>.a<attempt>.n<rank>``):
    while it runs it holds the job's GPUs, CPU cores and memory per node; no disk."""
    return Reading(
        environment_id=subject, workspace_id=job.workspace_id, owner_id=job.owner_id, at=at, status=status,
        gpu_model=job.gpu_model or "", gpu_count=job.gpus_per_node, with_gpu=True, cpu_cores=job.cpu_cores,
        memory_gib=job.memory_gib, disk_gib=0,
    )


def running_nodes(job: TrainingJob) -> set[str]:
    """Node ids of the job whose containers run as their agents report."""
    return {node_id(job.id, job.attempt, n.rank) for n in job.node_states if n.state == "running"}


class MeteredJobs:
    """A ``TrainingJobRepository`` that notes a reading for every node of a job that starts
    or stops running between the job's first load in this transaction and its save
    (billing per node: each node its own subject, its own segments)."""

    def __init__(self, inner: Any, note: Callable[[list[Reading]], None], now: Callable[[], datetime]):
        self._inner, self._note, self._now = inner, note, now
        self._before: dict[str, set[str]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _seen(self, job: TrainingJob | None) -> TrainingJob | None:
        if job is not None:
            self._before.setdefault(job.id, running_nodes(job))
        return job

    async def get(self, job_id: str) -> TrainingJob | None:
        return self._seen(await self._inner.get(job_id))

    async def list(self, **kw: Any) -> tuple[list[TrainingJob], int]:
        jobs, total = await self._inner.list(**kw)
        for job in jobs:
            self._seen(job)
        return jobs, total

    async def list_by_status(self, statuses: list) -> list[TrainingJob]:
        jobs = await self._inner.list_by_status(statuses)
        for job in jobs:
            self._seen(job)
        return jobs

    def _diff(self, job: TrainingJob) -> None:
        before, after = self._before.get(job.id, set()), running_nodes(job)
        if before != after:
            at = self._now()
            self._note([node_reading(job, n, "running", at) for n in sorted(after - before)]
                       + [node_reading(job, n, "stopped", at) for n in sorted(before - after)])
        self._before[job.id] = after

    async def add(self, job: TrainingJob) -> None:
        self._diff(job)
        await self._inner.add(job)

    async def update(self, job: TrainingJob) -> None:
        self._diff(job)
        await self._inner.update(job)


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
    def __init__(self, inner: UnitOfWork, store: BillingStore, clock: Clock | None = None):
        self._inner = inner
        self._store = store
        self._clock = clock
        self._noted: list[Reading] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "MeteringUnitOfWork":
        await self._inner.__aenter__()
        self._noted = []
        self.environments = TappedEnvironments(self._inner.environments, lambda env: self._noted.extend(readings_of(env)))
        jobs = getattr(self._inner, "training_jobs", None)
        if jobs is not None:
            self.training_jobs = MeteredJobs(jobs, self._noted.extend, self._now)
        return self

    def _now(self) -> datetime:
        return self._clock.now() if self._clock is not None else datetime.now(timezone.utc)

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
