"""Training jobs in the in-memory store (tests, ``persistence=memory``)."""

from __future__ import annotations

import copy

from remotegpu.adapters.memory.transaction import Transaction
from remotegpu.domain.workloads.models import JobStatus, TrainingJob
from remotegpu.domain.workloads.services import InferenceService, ServiceStatus


class InMemoryTrainingJobRepository:
    def __init__(self, tx: Transaction):
        self._tx = tx

    def _all(self) -> list[TrainingJob]:
        return [copy.deepcopy(row) for _, row in self._tx.rows("training_jobs")]

    async def add(self, job: TrainingJob) -> None:
        self._tx.insert("training_jobs", job.id, job)

    async def get(self, job_id: str) -> TrainingJob | None:
        return self._tx.get("training_jobs", job_id)

    async def update(self, job: TrainingJob) -> None:
        self._tx.update("training_jobs", job.id, job)

    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[TrainingJob], int]:
        found = [j for j in self._all() if workspace_ids is None or j.workspace_id in workspace_ids]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[offset: offset + limit], len(found)

    async def list_by_status(self, statuses: list[JobStatus]) -> list[TrainingJob]:
        found = [j for j in self._all() if j.status in statuses]
        return sorted(found, key=lambda j: (j.queued_at is None, j.queued_at or j.created_at, j.created_at, j.id))


class InMemoryInferenceServiceRepository:
    def __init__(self, tx: Transaction):
        self._tx = tx

    def _all(self) -> list[InferenceService]:
        return [copy.deepcopy(row) for _, row in self._tx.rows("inference_services")]

    async def add(self, service: InferenceService) -> None:
        self._tx.insert("inference_services", service.id, service)

    async def get(self, service_id: str) -> InferenceService | None:
        return self._tx.get("inference_services", service_id)

    async def update(self, service: InferenceService) -> None:
        self._tx.update("inference_services", service.id, service)

    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[InferenceService], int]:
        found = [s for s in self._all() if s.status is not ServiceStatus.DELETED
                 and (workspace_ids is None or s.workspace_id in workspace_ids)]
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return found[offset: offset + limit], len(found)

    async def list_active(self) -> list[InferenceService]:
        return sorted((s for s in self._all() if s.status is ServiceStatus.ACTIVE), key=lambda s: (s.created_at, s.id))
