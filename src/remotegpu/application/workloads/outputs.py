"""A succeeded job's output becomes a model (or dataset) version.

When a job that declared ``output`` succeeds, its output is ``collecting``: the
heartbeat asks node 0's agent (whose exited container is kept until then) to copy the
directory out of the container and send it (``DesiredJobNode.collect_output``). The
agent sends a tar archive of it — or why it could not (the path does not exist) — to
``receive``: the storage context makes the next version of the declared model from the
archive's regular files, acting as the job's owner, with ``source = {job, id}``. The
job's output then says ``done`` with the version's number, or ``failed`` and why; only
then may the agent remove node 0's container. A job that did not succeed makes no
version (``skipped``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from remotegpu.application.identity.secrets import hash_secret
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.workloads.ports import JobOutputVersions
from remotegpu.domain.shared.errors import DomainError, NotFound, Unauthenticated
from remotegpu.domain.workloads.models import TrainingJob, parse_node_id

log = logging.getLogger(__name__)


@dataclass
class JobOutputReceiver:
    uow: UnitOfWorkFactory
    clock: Clock
    versions: JobOutputVersions | None = None

    async def expects(self, agent_token: str, node: str) -> TrainingJob:
        """The job whose output is being collected from ``node`` on the agent's host
        (Unauthenticated: a bad agent token; NotFound: nothing expected from that node)."""
        parsed = parse_node_id(node)
        async with self.uow() as uow:
            host = await uow.hosts.get_by_agent_token(hash_secret(agent_token))
            if host is None:
                raise Unauthenticated("agent token is invalid; register the agent again with a new join token",
                                      code="invalid_agent_token")
            job = None if parsed is None else await uow.training_jobs.get(parsed[0])
        if job is None or parsed is None or job.output_node() != node or not any(
                e.get("attempt") == parsed[1] and e.get("rank") == parsed[2] and e.get("host_id") == host.id
                for e in job.exit_codes):
            raise NotFound("no output is being collected from that node")
        return job

    async def receive(self, agent_token: str, node: str, archive: Path | None, error: str = "") -> TrainingJob:
        """Make the version from ``archive`` (a tar of the output directory, as Docker's
        archive API gives it) or record ``error``; the job as it is now."""
        job = await self.expects(agent_token, node)
        assert job.output is not None
        version, problem = None, error or ""
        if archive is None and not problem:
            problem = "the agent sent no archive"
        if not problem:
            if self.versions is None:
                problem = "this server has no storage for job outputs"
            else:
                async with self.uow() as uow:
                    owner = await uow.users.get(job.owner_id)
                if owner is None or not owner.is_active:
                    problem = "the job's owner is no longer active"
                else:
                    try:
                        version = await self.versions.store_archive(
                            owner, job.output.kind, job.output.repository_id, archive,
                            top=PurePosixPath(job.output.path).name, job_id=job.id,
                            message=f"output of training job {job.name} ({job.id})")
                    except DomainError as exc:
                        problem = str(exc) or type(exc).__name__
        async with self.uow() as uow:
            current = await uow.training_jobs.get(job.id)
            if current is not None and current.output_node() == node:
                if version is not None:
                    current.output_stored(version)
                else:
                    current.output_failed(problem)
                    log.warning("job %s: output not stored: %s", job.id, problem)
                current.updated_at = self.clock.now()
                await uow.training_jobs.update(current)
                await uow.commit()
            return current or job
