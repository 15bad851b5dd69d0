"""The server's side of job nodes in the agent conversation.

On every heartbeat of a host (inside its scheduling transaction):

* logs: each chunk the agent sent is appended to the node's log (repeated bytes are
  skipped, so a resent chunk is harmless);
* observe: each live node placed on this host takes the state its agent reports
  (running, exited with a code, failed to start, missing). Then the gang is judged:
  every node running → job ``running``; every node exited 0 → ``succeeded``; any node
  exited non-zero, failed or vanished → the gang fails as one: the other nodes are
  stopped, and the job is queued again for a new attempt while ``max_retries`` allow
  (the whole gang restarts: new containers, every node), else ``failed``. A running
  job past its time limit → ``timed_out``. Whenever a job ends or restarts its nodes
  are released in this very transaction, so the queue passes that run before it
  commits can give the GPUs to the next work at once;
* desired: the nodes the agent must run (with their spec), and for every other node
  it reports: ``stopped`` while the server still misses bytes of its log, then
  ``removed``. A node of a job the server does not know is stopped, never removed.
  Node 0 of a succeeded job whose output is being collected stays ``stopped`` with
  ``collect_output`` (its agent copies the directory out and sends it:
  ``outputs.py``) and is removed once the output is stored or has failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from remotegpu.application.fleet.agent_protocol import DesiredJobNode, HostReport, ObservedJobNode
from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.application.workloads.ports import DataMountResolver, JobLogStore, JobNodeSpec, resolve_mounts
from remotegpu.domain.fleet.models import Host, HostStatus
from remotegpu.domain.workloads.services import REPLICA_PREFIX
from remotegpu.domain.workloads.models import (
    JobStatus,
    TrainingJob,
    hostfile,
    node_id,
    parse_node_id,
    rendezvous_env,
)

log = logging.getLogger(__name__)

#: A node whose host has been silent (offline) this long is lost.
LOST_AFTER_SECONDS = 60.0


def node_key(attempt: int, rank: int) -> str:
    return f"a{attempt}.n{rank}"


def alias(rank: int) -> str:
    return f"node-{rank}"


def node_spec(job: TrainingJob, rank: int, fake_gpus: bool, mounts: tuple = ()) -> JobNodeSpec:
    node = job.node_states[rank]
    env = {**job.env, **rendezvous_env(job, rank, alias(0))}
    return JobNodeSpec(
        node_id=node_id(job.id, job.attempt, rank), job_id=job.id, image=job.image, command=list(job.command), env=env,
        cpu_cores=float(job.cpu_cores), memory_gib=float(job.memory_gib), gpu_uuids=list(node.gpu_uuids),
        gpu_indices=list(node.gpu_indices), fake_gpus=fake_gpus,
        hostfile=hostfile(job, [alias(n.rank) for n in job.node_states]), alias=alias(rank), workspace_id=job.workspace_id,
        data_mounts=tuple(mounts),
    )


@dataclass
class JobHeartbeat:
    clock: Clock
    logs: JobLogStore
    lost_after_seconds: float = LOST_AFTER_SECONDS
    services: Any = None  # ServiceNodes: inference replicas ride on the same node protocol
    data_mounts: DataMountResolver | None = None  # the storage context: nodes' dataset/model mounts

    async def __call__(self, uow: UnitOfWork, host: Host, report: HostReport) -> list[DesiredJobNode]:
        now = self.clock.now()
        jobs: dict[str, TrainingJob | None] = {}

        async def job_of(job_id: str) -> TrainingJob | None:
            if job_id not in jobs:
                jobs[job_id] = await uow.training_jobs.get(job_id)
            return jobs[job_id]

        # 1. logs
        for chunk in report.job_logs:
            parsed = parse_node_id(chunk.node_id)
            if parsed is None:
                continue
            job_id, attempt, rank = parsed
            job = await job_of(job_id)
            if job is None or not _ran_here(job, attempt, rank, host.id):
                continue
            await self.logs.append(job_id, node_key(attempt, rank), chunk.offset, chunk.data)

        # 2. observe live nodes on this host and judge their gangs
        observed = {o.node_id: o for o in report.job_nodes}
        live = [j for j in await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING])
                if any(n.host_id == host.id for n in j.node_states)]
        for job in live:
            jobs[job.id] = job
            if report.runtime_healthy and report.jobs_healthy:
                for node in job.node_states:
                    if node.host_id == host.id:
                        _observe(node, observed.get(node_id(job.id, job.attempt, node.rank)))
            _judge(job, now)
            await uow.training_jobs.update(job)

        # 3. desired
        desired: dict[str, DesiredJobNode] = {}
        for job in live:
            if not job.status.holds_resources:
                continue
            for node in job.node_states:
                if node.host_id == host.id:
                    nid = node_id(job.id, job.attempt, node.rank)
                    want = "running" if node.state in ("starting", "running") else "stopped"
                    spec = None
                    if want == "running":
                        spec = node_spec(job, node.rank, host.fake_gpus,
                                         await resolve_mounts(self.data_mounts, job.workspace_id, job.data_mounts))
                    desired[nid] = DesiredJobNode(
                        nid, want, spec,
                        await self.logs.size(job.id, node_key(job.attempt, node.rank)),
                    )
        if self.services is not None:
            for d in await self.services(uow, host, observed, report.runtime_healthy and report.jobs_healthy):
                desired[d.node_id] = d
        for seen in report.job_nodes:
            if seen.node_id in desired or seen.node_id.startswith(REPLICA_PREFIX):
                continue
            parsed = parse_node_id(seen.node_id)
            job = None if parsed is None else await job_of(parsed[0])
            if parsed is None or job is None or not _ran_here(job, parsed[1], parsed[2], host.id):
                desired[seen.node_id] = DesiredJobNode(seen.node_id, "stopped")  # unknown: kept, never removed
                continue
            kept = await self.logs.size(job.id, node_key(parsed[1], parsed[2]))
            if job.output is not None and job.output_node() == seen.node_id:
                # A succeeded job's output is copied out of this exited container first.
                desired[seen.node_id] = DesiredJobNode(seen.node_id, "stopped", None, kept, keep_network=True,
                                                       collect_output=job.output.path)
                continue
            done = seen.status != "running" and kept >= seen.log_size
            # The job's network stays while the job may still use it (a peer still starting,
            # the next attempt); once the job ended, the last node out drops it.
            desired[seen.node_id] = DesiredJobNode(seen.node_id, "removed" if done else "stopped", None, kept,
                                                   keep_network=not job.status.terminal)
        return list(desired.values())

    async def fail_silent_hosts(self, uow: UnitOfWork, hosts: list[Host]) -> list[str]:
        """Nodes on a host offline for over ``lost_after_seconds`` are lost, so their gangs
        fail or restart (a short silence — a slow beat — is not a reason to kill a job: a
        host that comes back reports its containers as they are)."""
        now = self.clock.now()
        silent = {h.id: h for h in hosts if h.status is HostStatus.OFFLINE and h.last_heartbeat_at is not None
                  and (now - h.last_heartbeat_at).total_seconds() >= self.lost_after_seconds}
        if not silent:
            return []
        ended = []
        for job in await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING]):
            mine = [n for n in job.node_states if n.host_id in silent]
            if not mine:
                continue
            for node in mine:
                node.state, node.message = "lost", f"host {silent[node.host_id].name} has been silent for over {int(self.lost_after_seconds)} s"
            _judge(job, now)
            await uow.training_jobs.update(job)
            ended.append(job.id)
        return ended


def _ran_here(job: TrainingJob, attempt: int, rank: int, host_id: str) -> bool:
    if attempt == job.attempt and any(n.rank == rank and n.host_id == host_id for n in job.node_states):
        return True
    return any(h.get("attempt") == attempt and h.get("rank") == rank and h.get("host_id") == host_id for h in job.exit_codes)


def _observe(node, seen: ObservedJobNode | None) -> None:
    if node.state in ("exited", "lost"):
        return  # final for this attempt
    if seen is None or seen.status == "missing":
        if node.state == "running":
            node.state, node.message = "lost", "its container disappeared"
        return
    if seen.status == "running":
        node.state = "running"
    elif seen.status == "exited":
        node.state, node.exit_code = "exited", seen.exit_code
        node.message = seen.message
    elif seen.status == "failed":
        node.state, node.message = "lost", seen.message or "could not start"


def _judge(job: TrainingJob, now) -> None:
    nodes = job.node_states
    broken = [n for n in nodes if n.state == "lost" or (n.state == "exited" and n.exit_code != 0)]
    if broken:
        first = broken[0]
        what = f"exit code {first.exit_code}" if first.state == "exited" else first.message or "lost"
        job.end_attempt()
        if job.attempt < job.max_retries:
            job.attempt += 1
            job.transition(JobStatus.QUEUED, f"node {first.rank} failed ({what}): restarting the whole gang "
                           f"(attempt {job.attempt + 1} of {job.max_retries + 1})", now)
        else:
            job.exit_code = first.exit_code if first.exit_code not in (None, 0) else 1
            job.transition(JobStatus.FAILED, f"node {first.rank} failed ({what}): the gang was stopped", now)
        return
    if all(n.state == "exited" for n in nodes):
        job.end_attempt()
        job.exit_code = 0
        job.transition(JobStatus.SUCCEEDED, "every node exited 0", now)
        return
    if job.status is JobStatus.STARTING and all(n.state in ("running", "exited") for n in nodes):
        job.transition(JobStatus.RUNNING, f"all {job.nodes} nodes running", now)
    if job.deadline_passed(now):
        job.end_attempt()
        job.exit_code = 124
        job.transition(JobStatus.TIMED_OUT, f"time limit of {job.time_limit_minutes} min reached: the gang was stopped", now)

