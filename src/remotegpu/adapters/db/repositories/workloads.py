"""Training jobs in SQL (``tables.training_jobs``); nodes and history as JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from remotegpu.adapters.db import tables as t
from remotegpu.adapters.db.repositories._base import SqlRepository
from remotegpu.domain.workloads.autoscaler import AutoscalePolicy
from remotegpu.domain.workloads.models import JobNode, JobOutput, JobStatus, TrainingJob
from remotegpu.domain.workloads.services import POLICY_FIELDS, InferenceService, Replica, ServiceStatus


def _row(job: TrainingJob) -> dict[str, Any]:
    return {
        "id": job.id, "workspace_id": job.workspace_id, "owner_id": job.owner_id, "name": job.name, "image": job.image,
        "command": list(job.command), "env": dict(job.env), "gpus_per_node": job.gpus_per_node, "gpu_model": job.gpu_model,
        "nodes": job.nodes, "cpu_cores": job.cpu_cores, "memory_gib": job.memory_gib,
        "time_limit_minutes": job.time_limit_minutes, "max_retries": job.max_retries, "priority": job.priority,
        "status": job.status.value, "status_message": job.status_message, "created_at": job.created_at,
        "updated_at": job.updated_at, "queued_at": job.queued_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "attempt": job.attempt, "node_states": [n.to_dict() for n in job.node_states],
        "exit_code": job.exit_code, "exit_codes": list(job.exit_codes), "history": list(job.history),
        "data_mounts": [dict(m) for m in job.data_mounts],
        "output": None if job.output is None else job.output.to_dict(),
    }


def _job(r: Any) -> TrainingJob:
    return TrainingJob(
        id=r.id, workspace_id=r.workspace_id, owner_id=r.owner_id, name=r.name, image=r.image, command=list(r.command),
        created_at=r.created_at, env=dict(r.env), gpus_per_node=r.gpus_per_node, gpu_model=r.gpu_model, nodes=r.nodes,
        cpu_cores=r.cpu_cores, memory_gib=r.memory_gib, time_limit_minutes=r.time_limit_minutes,
        max_retries=r.max_retries, priority=r.priority, status=JobStatus(r.status), status_message=r.status_message,
        updated_at=r.updated_at, queued_at=r.queued_at, started_at=r.started_at, finished_at=r.finished_at,
        attempt=r.attempt, node_states=[JobNode.from_dict(n) for n in r.node_states], exit_code=r.exit_code,
        exit_codes=list(r.exit_codes), history=list(r.history), data_mounts=[dict(m) for m in r.data_mounts or []],
        output=JobOutput.from_dict(r.output),
    )


class SqlTrainingJobRepository(SqlRepository):
    async def add(self, job: TrainingJob) -> None:
        await self._execute(t.training_jobs.insert().values(**_row(job)))

    async def get(self, job_id: str) -> TrainingJob | None:
        row = (await self._execute(select(t.training_jobs).where(t.training_jobs.c.id == job_id))).first()
        return None if row is None else _job(row)

    async def update(self, job: TrainingJob) -> None:
        values = _row(job)
        del values["id"]
        await self._execute(t.training_jobs.update().where(t.training_jobs.c.id == job.id).values(**values))

    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[TrainingJob], int]:
        c = t.training_jobs.c
        where = [] if workspace_ids is None else [c.workspace_id.in_(workspace_ids)]
        total = (await self._execute(select(func.count()).select_from(t.training_jobs).where(*where))).scalar_one()
        rows = await self._execute(
            select(t.training_jobs).where(*where).order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        )
        return [_job(r) for r in rows], total

    async def list_by_status(self, statuses: list[JobStatus]) -> list[TrainingJob]:
        c = t.training_jobs.c
        rows = await self._execute(
            select(t.training_jobs).where(c.status.in_([s.value for s in statuses]))
            .order_by(c.queued_at.is_(None), c.queued_at, c.created_at, c.id)
        )
        return [_job(r) for r in rows]


def service_to_data(s: InferenceService) -> dict[str, Any]:
    data = {k: v for k, v in s.__dict__.items() if k not in ("replicas", "status", "created_at", "updated_at", "autoscale")}
    data.update({k: getattr(s.autoscale, k) for k in POLICY_FIELDS})  # stored flat, as before
    data["replicas"] = [r.to_dict() for r in s.replicas]
    data["updated_at"] = s.updated_at.isoformat() if s.updated_at else None
    return data


def service_from(data: dict[str, Any], status: str, created_at) -> InferenceService:
    from datetime import datetime

    d = dict(data)
    replicas = [Replica.from_dict(r) for r in d.pop("replicas", [])]
    updated = d.pop("updated_at", None)
    policy = AutoscalePolicy(**{k: d.pop(k) for k in POLICY_FIELDS if k in d})
    return InferenceService(**d, autoscale=policy, replicas=replicas, status=ServiceStatus(status), created_at=created_at,
                            updated_at=datetime.fromisoformat(updated) if updated else None)


class SqlInferenceServiceRepository(SqlRepository):
    async def add(self, service: InferenceService) -> None:
        await self._execute(t.inference_services.insert().values(
            id=service.id, workspace_id=service.workspace_id, status=service.status.value, created_at=service.created_at,
            data=service_to_data(service)))

    async def get(self, service_id: str) -> InferenceService | None:
        row = (await self._execute(select(t.inference_services).where(t.inference_services.c.id == service_id))).first()
        return None if row is None else service_from(row.data, row.status, row.created_at)

    async def update(self, service: InferenceService) -> None:
        await self._execute(t.inference_services.update().where(t.inference_services.c.id == service.id).values(
            status=service.status.value, data=service_to_data(service)))

    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[InferenceService], int]:
        c = t.inference_services.c
        where = [c.status != ServiceStatus.DELETED.value]
        if workspace_ids is not None:
            where.append(c.workspace_id.in_(workspace_ids))
        total = (await self._execute(select(func.count()).select_from(t.inference_services).where(*where))).scalar_one()
        rows = await self._execute(select(t.inference_services).where(*where)
                                   .order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset))
        return [service_from(r.data, r.status, r.created_at) for r in rows], total

    async def list_active(self) -> list[InferenceService]:
        c = t.inference_services.c
        rows = await self._execute(select(t.inference_services).where(c.status == ServiceStatus.ACTIVE.value)
                                   .order_by(c.created_at, c.id))
        return [service_from(r.data, r.status, r.created_at) for r in rows]
