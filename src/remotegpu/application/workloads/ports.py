"""Ports of the workloads context.

* ``TrainingJobRepository``: jobs (one aggregate each, its nodes inside).
* ``JobLogStore``: every node's log, kept after the job ends. Today files in the data
  dir (``adapters/workloads/file_logs.py``); object storage when the storage context
  lands — the port is four calls so that it can move.
* ``JobRuntime``: what an agent drives to run job nodes (one container per node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from remotegpu.application.environments.ports import DataMountSpec
from remotegpu.domain.workloads.models import JobStatus, TrainingJob

if TYPE_CHECKING:
    from remotegpu.domain.identity.models import User

#: Labels of job containers (besides the runtime's scope label).
LABEL_JOB_NODE = "remotegpu.job_node"
LABEL_JOB_ID = "remotegpu.job_id"

JobNodeStatus = Literal["running", "exited", "failed", "missing"]


class TrainingJobRepository(Protocol):
    async def add(self, job: TrainingJob) -> None: ...
    async def get(self, job_id: str) -> TrainingJob | None: ...
    async def update(self, job: TrainingJob) -> None: ...
    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[TrainingJob], int]:
        """Newest first; ``workspace_ids`` None: every workspace."""
        ...
    async def list_by_status(self, statuses: list[JobStatus]) -> list[TrainingJob]:
        """Oldest first (``queued_at``, then ``created_at``)."""
        ...


class JobLogStore(Protocol):
    async def append(self, job_id: str, node_key: str, offset: int, data: bytes) -> int:
        """Write ``data`` that starts at byte ``offset`` of the node's log; bytes already
        stored are skipped (a repeated chunk changes nothing). A chunk starting past the
        end is refused (returns the size unchanged). Returns the stored size."""
        ...
    async def size(self, job_id: str, node_key: str) -> int: ...
    async def read(self, job_id: str, node_key: str, offset: int = 0, limit: int | None = None) -> bytes: ...
    async def nodes(self, job_id: str) -> list[str]:
        """Node keys (``a{attempt}.n{rank}``) that have a log, sorted."""
        ...
    async def delete(self, job_id: str) -> None:
        """Every log of the job (retention). Silent when there is none."""
        ...


@dataclass(frozen=True)
class JobNodeSpec:
    """One node's container: the job's image and command with the rendezvous variables,
    the hostfile, its GPUs and limits, and the per-job network it joins under ``alias``."""

    node_id: str
    job_id: str
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cpu_cores: float = 1.0
    memory_gib: float = 1.0
    gpu_uuids: list[str] = field(default_factory=list)
    gpu_indices: list[int] = field(default_factory=list)
    fake_gpus: bool = False
    hostfile: str = ""
    alias: str = ""  # its name on the job's network (node-<rank>)
    workspace_id: str | None = None
    # Inference replicas: container port → host port, published on the agent's private
    # address only (the platform's router reaches it). Empty for training nodes.
    ports: dict[int, int] = field(default_factory=dict)
    network: str = ""  # the network key ("" = job_id): replicas of one service share one
    # Dataset/model versions to mount read-only (resolved by the server); the agent
    # materializes them in its host cache and fills ``read_only_binds`` (host path, target).
    data_mounts: tuple[DataMountSpec, ...] = ()
    read_only_binds: tuple[tuple[str, str], ...] = ()

    @property
    def env_id(self) -> str:
        """The key the agent's mount cache files this node's trees under."""
        return self.node_id


@dataclass(frozen=True)
class JobNodeState:
    node_id: str
    status: JobNodeStatus
    exit_code: int | None = None
    message: str = ""
    log_size: int = 0  # bytes of log the runtime holds for it


class JobRuntime(Protocol):
    """Runs job nodes on one host. Idempotent, level-triggered like EnvironmentRuntime."""

    async def ensure_running(self, spec: JobNodeSpec) -> None:
        """Create and start the node's container unless it exists (running or exited:
        a node runs once; it is never restarted in place — a retry is a new attempt)."""
        ...

    async def stop(self, node_id: str) -> None:
        """Stop it (kept, with its log). Silent when absent or not running."""
        ...

    async def remove(self, node_id: str, keep_network: bool = False) -> None:
        """Remove it and, when it was the last node of its job here, the job's network
        (unless ``keep_network``: a service's replicas come back on it)."""
        ...

    async def list(self) -> list[JobNodeState]: ...

    async def read_log(self, node_id: str, offset: int, limit: int) -> bytes:
        """Bytes ``offset``..``offset+limit`` of the node's output (stdout and stderr,
        interleaved as written)."""
        ...

    async def export(self, node_id: str, path: str, destination: Path) -> None:
        """``path`` of the node's container (exited: kept until the server lets it go)
        as a tar archive at ``destination``, entries ``<basename>/...``.
        FileNotFoundError: no such container or path."""
        ...


# --- inference services -------------------------------------------------------------------

from remotegpu.domain.workloads.services import InferenceService  # noqa: E402


class InferenceServiceRepository(Protocol):
    async def add(self, service: InferenceService) -> None: ...
    async def get(self, service_id: str) -> InferenceService | None: ...
    async def update(self, service: InferenceService) -> None: ...
    async def list(self, *, workspace_ids: list[str] | None, limit: int, offset: int) -> tuple[list[InferenceService], int]:
        """Not deleted, newest first."""
        ...
    async def list_active(self) -> list[InferenceService]: ...


class DataMountResolver(Protocol):
    async def resolve(self, workspace_id: str, mounts: list[dict[str, str]]) -> list[tuple[str, str, str, int]]:
        """(target, kind, repository id, version number) of the mounts that resolve now."""
        ...


async def resolve_mounts(resolver: DataMountResolver | None, workspace_id: str, mounts: list[dict]) -> tuple[DataMountSpec, ...]:
    """A job node's or replica's mounts as the agent gets them (one that no longer
    resolves is left out: the storage context logs it)."""
    if not mounts or resolver is None:
        return ()
    return tuple(DataMountSpec(t, k, r, v) for t, k, r, v in await resolver.resolve(workspace_id, mounts))


class JobOutputVersions(Protocol):
    """The storage context's side of job outputs (application/storage/job_outputs.py)."""

    async def check_target(self, actor: "User", workspace_id: str, kind: str, name: str) -> dict[str, str]:
        """{"kind", "repository_id", "name"} of a model/dataset of the workspace the actor
        may write (NotFound otherwise: another tenant's answers as unknown)."""
        ...

    async def store_archive(self, actor: "User", kind: str, repository_id: str, archive: "Path", *, top: str,
                            job_id: str, message: str) -> int:
        """The archive's regular files (below ``top``) as the next version; its number."""
        ...


class RouterView(Protocol):
    """What the router knows of replicas right now (readiness: this process's probes;
    requests in flight: every routing process's, when they share state)."""

    def ready(self, replica_id: str) -> bool: ...
    def in_flight(self, replica_id: str) -> int: ...
    def drained(self, replica_id: str) -> bool:
        """A draining replica may go: nothing in flight to it, none on its way."""
        ...
