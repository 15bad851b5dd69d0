"""The job queue moves with the environments' queue: at the end of every scheduling
transaction (``QueueingUnitOfWork``), after the environments' pass, in the same
transaction — so a job that ends (its GPUs released) lets queued environments and
jobs start in the very commit that ended it.

Rule: ``domain.workloads.gang.plan_gangs`` (all-or-nothing gangs, priority with aging,
backfill, starving jobs reserve their hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remotegpu.application.environments import placement as pl
from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.domain.workspaces.quota import Usage
from remotegpu.domain.scheduling import PlacementRequest
from remotegpu.domain.workloads.gang import AGING_STEP_SECONDS, STARVATION_SECONDS, QueuedGang, plan_gangs
from remotegpu.domain.workloads.models import JobNode, JobStatus, TrainingJob


#: Runtimes whose agents run job nodes and replicas (the single-user ``local`` one does not).
WORKLOAD_RUNTIMES = frozenset({"docker", "memory", "kubernetes"})


def runs_workloads(host) -> bool:
    return host.runtime in WORKLOAD_RUNTIMES


def request_of(job: TrainingJob) -> PlacementRequest:
    return PlacementRequest(
        gpu_count=job.gpus_per_node, gpu_model=job.gpu_model if job.gpus_per_node else None,
        cpu_cores=job.cpu_cores, memory_gib=job.memory_gib,
    )


@dataclass
class JobQueuePass:
    clock: Clock
    starvation_seconds: float = STARVATION_SECONDS
    aging_step_seconds: float = AGING_STEP_SECONDS
    quotas: WorkspacePolicy = field(default_factory=WorkspacePolicy)

    async def __call__(self, uow: UnitOfWork, known: Any = None) -> list[str]:
        queued = await uow.training_jobs.list_by_status([JobStatus.QUEUED])
        if not queued:
            return []
        # A job its workspace's quota cannot take now waits (and holds nothing back).
        over = {}
        for j in queued:
            usage = Usage(gpus=j.nodes * j.gpus_per_node, cpu_cores=j.nodes * j.cpu_cores, memory_gib=j.nodes * j.memory_gib)
            if not await self.quotas.fits(uow, j.workspace_id, usage):
                over[j.id] = "queued: waiting for its workspace's quota to allow it"
        queued_all, queued = queued, [j for j in queued if j.id not in over]
        hosts = [h for h in await uow.hosts.list() if runs_workloads(h)]
        by_id = {h.id: h for h in hosts}
        fleet = await pl.fleet_snapshot(uow, hosts)  # environments' and jobs' allocations
        now = self.clock.now()
        items = [QueuedGang(j.id, request_of(j), j.nodes, j.priority, j.queued_at or j.created_at) for j in queued]
        plan = plan_gangs(fleet, items, now, starvation_seconds=self.starvation_seconds, aging_step=self.aging_step_seconds)
        jobs = {j.id: j for j in queued}
        started = []
        for job_id, placements in plan.started:
            job = jobs[job_id]
            # Jobs started before it in this pass count now: re-check its workspace's quota.
            usage = Usage(gpus=job.nodes * job.gpus_per_node, cpu_cores=job.nodes * job.cpu_cores, memory_gib=job.nodes * job.memory_gib)
            if not await self.quotas.fits(uow, job.workspace_id, usage):
                over[job_id] = "queued: waiting for its workspace's quota to allow it"
                continue
            nodes = []
            for rank, p in enumerate(placements):
                host = by_id[p.host_id]
                chosen = sorted((g for g in host.gpus if g.uuid in set(p.gpu_uuids)), key=lambda g: g.index)
                nodes.append(JobNode(rank=rank, host_id=p.host_id, gpu_uuids=[g.uuid for g in chosen],
                                     gpu_indices=[g.index for g in chosen], address=host.private_address or host.address))
            names = ", ".join(sorted({by_id[p.host_id].name for p in placements}))
            job.place(nodes, f"placed: {job.nodes} × {job.gpus_per_node} GPU on {names}", now)
            await uow.training_jobs.update(job)
            started.append(job_id)
        waiting = {**{k: f"queued: {v}" for k, v in plan.waiting.items()}, **over}
        jobs.update({j.id: j for j in queued_all})
        for job_id, message in waiting.items():
            job = jobs[job_id]
            if job.status_message != message:
                job.status_message = message
                await uow.training_jobs.update(job)
        return started


class ChainedQueuePass:
    """Several passes in order, in one transaction (environments first, then jobs)."""

    def __init__(self, *passes: Any):
        self._passes = passes

    async def __call__(self, uow: UnitOfWork, known: Any = None) -> list[str]:
        started: list[str] = []
        for p in self._passes:
            started += await p(uow, known) if known is not None else await p(uow)
        return started
