"""Training-job use cases: create, list, get, cancel, logs.

A create places the whole gang at once when it fits, else queues it (the reason is
its status message); every use case that changes capacity takes the scheduling lock,
so the queue passes (environments', then jobs') run before it commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from datetime import timedelta

from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.workloads.ports import JobLogStore, JobOutputVersions
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.environments.images import ImagePolicy
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import InvalidInput, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workloads.models import JobOutput, JobStatus, TrainingJob, check_output_path, validate_job
from remotegpu.domain.workspaces.models import Role
from remotegpu.domain.workspaces.quota import Usage


@dataclass(frozen=True)
class CreateJob:
    workspace_id: str
    name: str
    command: list[str]
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    gpus_per_node: int = 0
    gpu_model: str | None = None
    nodes: int = 1
    cpu_cores: int = 2
    memory_gib: int = 8
    time_limit_minutes: int | None = None
    max_retries: int = 0
    priority: int = 0
    # [{"kind": "dataset"|"model", "name": name or id, "version": ref}] (the storage context checks them)
    mounts: list[dict] = field(default_factory=list)
    # {"kind": "model"|"dataset", "name": name or id, "path": "/output"}: node 0's directory
    # that becomes the next version of that model when the job succeeds (None: no output).
    output: dict | None = None


class DataMountCheck(Protocol):
    async def check_mounts(self, actor: User, workspace_id: str, requests: list[dict[str, str]]) -> list[dict[str, str]]: ...


async def checked_mounts(checker: DataMountCheck | None, actor: User, workspace_id: str, requests: list[dict]) -> list[dict]:
    """The stored form of dataset/model mounts (422 naming the one that does not resolve)."""
    if not requests:
        return []
    if checker is None:
        raise InvalidInput("dataset and model mounts are not available on this server", details={"field": "mounts"})
    return await checker.check_mounts(actor, workspace_id, [dict(m) for m in requests])


def may_operate(actor: User, role: Role | None, job: TrainingJob) -> bool:
    """Like environments: admins of the workspace and platform admins; members their own."""
    if actor.is_admin:
        return True
    if role is None:
        return False
    return role.at_least(Role.ADMIN) or (role.at_least(Role.MEMBER) and job.owner_id == actor.id)


async def load_visible(uow: UnitOfWork, actor: User, job_id: str) -> tuple[TrainingJob, Role | None]:
    job = await uow.training_jobs.get(job_id)
    if job is None:
        raise NotFound("training job not found")
    view = await authorize(uow, actor, job.workspace_id, Role.VIEWER)  # NotFound outside the workspace
    return job, view.role


@dataclass
class TrainingJobService:
    uow: UnitOfWorkFactory
    clock: Clock
    logs: JobLogStore
    default_image: str = "remotegpu/base:latest"
    images: ImagePolicy | None = None
    quotas: WorkspacePolicy = field(default_factory=WorkspacePolicy)
    # Wakes the agents' long-polls after a commit that placed or ended nodes (AgentService.poke).
    notify: Callable[[set[str] | None], None] | None = None
    data_mounts: DataMountCheck | None = None  # the storage context (None: no mounts)
    outputs: JobOutputVersions | None = None  # the storage context (None: no outputs)

    def _notify(self) -> None:
        if self.notify is not None:
            self.notify(None)

    async def create(self, actor: User, request: CreateJob) -> TrainingJob:
        image = request.image or self.default_image
        if self.images is not None:
            self.images.check(image)
        validate_job(
            name=request.name, command=request.command, env=request.env, gpus_per_node=request.gpus_per_node,
            nodes=request.nodes, cpu_cores=request.cpu_cores, memory_gib=request.memory_gib,
            time_limit_minutes=request.time_limit_minutes, max_retries=request.max_retries, priority=request.priority,
        )
        now = self.clock.now()
        job = TrainingJob(
            id=new_id(), workspace_id=request.workspace_id, owner_id=actor.id, name=request.name, image=image,
            command=list(request.command), created_at=now, updated_at=now, env=dict(request.env),
            gpus_per_node=request.gpus_per_node, gpu_model=request.gpu_model if request.gpus_per_node else None,
            nodes=request.nodes, cpu_cores=request.cpu_cores, memory_gib=request.memory_gib,
            time_limit_minutes=request.time_limit_minutes, max_retries=request.max_retries, priority=request.priority,
        )
        async with self.uow() as uow:
            await authorize(uow, actor, request.workspace_id, Role.MEMBER)
        job.data_mounts = await checked_mounts(self.data_mounts, actor, request.workspace_id, request.mounts)
        job.output = await self._output(actor, request)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            await authorize(uow, actor, request.workspace_id, Role.MEMBER)
            # A gang bigger than the workspace's whole quota could never run: 409. One that
            # only has to wait for the workspace's other work queues (the queue pass checks).
            quota, _ = await self.quotas.workspace_quota(uow, request.workspace_id)
            quota.check_request(Usage(), Usage(
                gpus=job.nodes * job.gpus_per_node, cpu_cores=job.nodes * job.cpu_cores, memory_gib=job.nodes * job.memory_gib,
            ))
            job.transition(JobStatus.QUEUED, "queued: waiting for the scheduler", now)
            await uow.training_jobs.add(job)
            await uow.commit()  # the job queue pass places it now if the whole gang fits
        self._notify()
        return await self.get(actor, job.id)

    async def _output(self, actor: User, request: CreateJob) -> JobOutput | None:
        if not request.output:
            return None
        path = check_output_path(request.output.get("path") or "/output")
        if self.outputs is None:
            raise InvalidInput("job outputs are not available on this server", details={"field": "output"})
        target = await self.outputs.check_target(actor, request.workspace_id, request.output.get("kind") or "model",
                                                 request.output["name"])
        return JobOutput(kind=target["kind"], repository_id=target["repository_id"], name=target["name"], path=path)

    async def get(self, actor: User, job_id: str) -> TrainingJob:
        async with self.uow() as uow:
            job, _ = await load_visible(uow, actor, job_id)
            return job

    async def list(self, actor: User, workspace_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[TrainingJob], int]:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
            return await uow.training_jobs.list(workspace_ids=[workspace_id], limit=limit, offset=offset)

    async def cancel(self, actor: User, job_id: str) -> TrainingJob:
        async with self.uow() as uow:
            await uow.lock_scheduling()
            job, role = await load_visible(uow, actor, job_id)
            if not may_operate(actor, role, job):
                raise PermissionDenied("only the job's owner or a workspace admin can do this", code="not_job_owner")
            job.check_can_cancel()
            job.end_attempt()  # GPUs free as this commits; the agents stop the nodes
            job.transition(JobStatus.CANCELLED, f"cancelled by {actor.username}", self.clock.now())
            await uow.training_jobs.update(job)
            await uow.commit()  # queue passes run first: what waited for these GPUs starts
        self._notify()
        return job

    async def purge_old_logs(self, retention_days: int) -> list[str]:
        """Delete the logs of jobs that ended more than ``retention_days`` ago; their ids."""
        cutoff = self.clock.now() - timedelta(days=retention_days)
        async with self.uow() as uow:
            ended = await uow.training_jobs.list_by_status([s for s in JobStatus if s.terminal])
        purged = []
        for job in ended:
            if job.finished_at is not None and job.finished_at < cutoff and await self.logs.nodes(job.id):
                await self.logs.delete(job.id)
                purged.append(job.id)
        return purged

    async def log_nodes(self, actor: User, job_id: str) -> tuple[TrainingJob, list[tuple[str, int]]]:
        """The job and (node key, bytes kept) of every node that has a log."""
        job = await self.get(actor, job_id)
        return job, [(key, await self.logs.size(job_id, key)) for key in await self.logs.nodes(job_id)]

    async def read_log(self, actor: User, job_id: str, node_key: str, offset: int = 0, limit: int | None = None) -> bytes:
        await self.get(actor, job_id)
        if node_key not in await self.logs.nodes(job_id):
            raise NotFound("no log for that node")
        return await self.logs.read(job_id, node_key, offset, limit)
