"""Ports of the environments context: where environments actually run.

An ``EnvironmentRuntime`` is what the host agent drives to make one host match the
desired state (like a JupyterHub spawner or a dstack compute backend). Adapters:
``remotegpu.adapters.runtime`` (in-memory for tests, Docker; Kubernetes later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

RuntimeStatus = Literal["running", "stopped", "missing", "failed"]

#: Labels every runtime puts on what it creates, so it can find its own things again.
LABEL_ENV_ID = "remotegpu.env_id"
LABEL_MANAGED = "remotegpu.managed"
#: Label (on ``RuntimeSpec.labels``) carrying the environment's generation: a restart
#: bumps it, and the agent recreates a container that runs an older one.
LABEL_GENERATION = "remotegpu.generation"

#: Label (on ``RuntimeSpec.labels``) naming the host the environment was placed on:
#: what an agent that registered again under a new host id finds on old containers.
LABEL_HOST = "remotegpu.host_id"

#: Label (on ``RuntimeSpec.labels``) naming the model of the GPUs the platform placed the
#: environment on: a runtime whose own scheduler picks the node (Kubernetes) selects by it.
LABEL_GPU_MODEL = "remotegpu.gpu_model"

#: Prefix of the ``message`` of an environment reported ``missing`` (nothing runs) although
#: its container exists, waiting for the runtime's own scheduler (a Kubernetes Pod still
#: Pending; the scheduler's reason follows). Stop and remove must still clean it up.
PENDING_PREFIX = "pending: "


def is_pending(status: str, message: str) -> bool:
    """A ``missing`` environment whose container waits to be placed (see ``PENDING_PREFIX``)."""
    return status == "missing" and message.startswith(PENDING_PREFIX)


#: The environment's disk (a volume): survives stop/start and recreation. A runtime
#: that can also keeps the rest of the container's filesystem across stop/start.
WORKSPACE_PATH = "/root/workspace"


@dataclass(frozen=True)
class DataMountSpec:
    """A dataset/model version to mount read-only at ``target`` (the server resolved its
    version); the agent materializes it in the host's cache and binds it."""

    target: str  # /datasets/<name> or /models/<name>
    kind: str
    repository_id: str
    version: int


@dataclass(frozen=True)
class RuntimeSpec:
    """What one environment should look like on this host.

    ``ports`` maps a container port to the host port allocated for it (``{22: 40022}``).
    ``private_ports`` names those of ``ports`` that only the platform may reach (Jupyter,
    behind the platform's authenticated proxy): a runtime publishes them on a private
    address (loopback for the embedded host) instead of a public one.
    ``gpu_uuids``/``gpu_indices`` name the same GPUs two ways: real devices are bound by
    UUID; with ``fake_gpus`` nothing is bound and the indices are only advertised through
    ``CUDA_VISIBLE_DEVICES``/``NVIDIA_VISIBLE_DEVICES`` (machines without GPUs).
    ``disk_gib`` is the size of the environment's disk (None: not given, e.g. by an
    older server); a runtime that cannot enforce a size records it (see DockerRuntime).
    ``workspace_id`` is the tenant the environment belongs to: environments of one
    workspace share a network, those of different workspaces cannot reach each other
    (None from an older server: the environment then gets a network of its own).
    """

    env_id: str
    image: str
    cpu_cores: float = 1.0
    memory_gib: float = 1.0
    gpu_uuids: list[str] = field(default_factory=list)
    gpu_indices: list[int] = field(default_factory=list)
    fake_gpus: bool = False
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    private_ports: frozenset[int] = frozenset()
    disk_gib: int | None = None
    workspace_id: str | None = None
    # Set by the server: versions to mount. Set by the agent once materialized: (host
    # directory, container path) pairs the runtime binds read-only.
    data_mounts: tuple[DataMountSpec, ...] = ()
    read_only_binds: tuple[tuple[str, str], ...] = ()
    # Set by the server: the workspace's shared disk (GiB), mounted read-write at
    # /root/shared (one volume per workspace on each host); None: the workspace has none.
    shared_disk_gib: int | None = None
    # (registry, username, password) to pull ``image`` with, when it lives in the
    # platform's registry (issue 15); never part of the container, nor of its spec hash.
    registry_auth: tuple[str, str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RuntimeState:
    """What the runtime observed about one environment.

    ``container_id`` is the runtime's opaque handle (a container id, a pod name);
    ``ports`` maps container ports to the host ports actually published;
    ``message`` explains ``failed`` (and anything else worth showing in the event log);
    ``generation`` is read back from the ``LABEL_GENERATION`` label of the spec it was
    created from (None when it carries none);
    ``ssh_sessions`` counts the SSH connections established to the environment's sshd
    right now (running environments only; 0 where the runtime cannot tell): the agent
    reports it so that SSH use counts as activity for the idle policy. (What the
    container's sshd presents is never read back: its host key is the platform's, see
    ``application/environments/credentials.py``.)
    """

    env_id: str
    status: RuntimeStatus
    container_id: str | None = None
    ports: dict[int, int] = field(default_factory=dict)
    started_at: datetime | None = None
    message: str = ""
    generation: int | None = None
    ssh_sessions: int = 0
    # The ``LABEL_HOST`` it carries ("" when none): the host it was created for.
    host_id: str = ""


def generation_of(labels: dict[str, str] | None) -> int | None:
    """The ``LABEL_GENERATION`` of a label set as an int; None when absent or not a number."""
    value = (labels or {}).get(LABEL_GENERATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class EnvironmentRuntimeError(Exception):
    """A runtime could not do what was asked (image missing, daemon refused, ...)."""


class EnvironmentRuntime(Protocol):
    """Runs environments on one host. Every method is idempotent and safe to repeat
    after a crash: the agent calls them level-triggered, from the desired state.

    An environment is its container (or process, or pod) plus its disk, mounted at
    ``/root/workspace``. The disk outlives stop and is deleted only by ``remove``.
    """

    async def ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        """Make ``spec.env_id`` run as ``spec`` describes and return its state.

        Creates it if absent, starts it if stopped, and does nothing if it already runs
        as specified. When a stopped environment is started with other ports, GPUs or
        limits, it is recreated on the same disk — and, where the runtime can (Docker:
        a snapshot of the container), with the rest of its filesystem too. A running
        environment whose spec changed is left alone (stop it first). Raises ``EnvironmentRuntimeError`` when it cannot
        be started (the returned state is never ``missing``, except ``is_pending``: a runtime
        with its own scheduler that cannot place it yet says why in ``message``).
        """
        ...

    async def stop(self, env_id: str) -> None:
        """Stop the environment quickly, keeping its disk. Silent if it is absent or
        already stopped."""
        ...

    async def remove(self, env_id: str) -> None:
        """Delete the environment and its disk: nothing is left. Silent if absent."""
        ...

    async def inspect(self, env_id: str) -> RuntimeState | None:
        """The environment's observed state, or ``None`` when neither it nor its disk
        exists. A disk whose container is gone (a crash mid-removal) reads as
        ``stopped`` with no ``container_id``: ``ensure_running`` brings it back,
        ``remove`` deletes it. Only running environments report ``ports`` and
        ``started_at``."""
        ...

    async def list(self) -> list[RuntimeState]:
        """Every environment this runtime manages (found by its labels, not by memory),
        so an agent that restarts can adopt them (or quarantine those it is not asked for)."""
        ...


@runtime_checkable
class RuntimeWithExec(Protocol):
    """Optional ability: run a command inside a running environment
    (ask ``isinstance(runtime, RuntimeWithExec)``)."""

    async def exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``argv`` in the environment as root, with ``env`` added to its environment
        (secrets go there, not into ``argv``: a command line is visible to every user of
        the host); return its exit code and its combined stdout/stderr. Raises
        ``EnvironmentRuntimeError`` if the environment is not running."""
        ...


# --- persistence of environments and their allocations ---------------------------------

from remotegpu.domain.environments.models import (  # noqa: E402
    Environment,
    EnvironmentEvent,
    EnvStatus,
    GpuAllocation,
    HostPort,
)
from remotegpu.domain.fleet.models import Gpu  # noqa: E402


@dataclass(frozen=True)
class EnvironmentListing:
    """One environment with what a list or detail page shows of it, read in bulk: a page
    costs the same few queries whatever its length (see ``EnvironmentRepository.listings``)."""

    env: Environment
    queue_position: int | None  # 1 = next in the queue; None unless queued
    host_name: str | None
    gpus: list[Gpu]  # the GPUs it holds, by index
    ports: list[HostPort]  # the host ports it holds, by (host, port)


class EnvironmentRepository(Protocol):
    """Environments and their event log.

    ``add``/``update`` also append the aggregate's ``pending_events`` to the log and
    clear them. Deleted environments stay (status ``deleted``) for history.
    """

    async def add(self, env: Environment) -> None: ...
    async def get(self, env_id: str) -> Environment | None: ...
    async def update(self, env: Environment) -> None: ...
    async def list(
        self, *, workspace_ids: list[str] | None, statuses: list[EnvStatus] | None, include_deleted: bool,
        limit: int, offset: int,
    ) -> tuple[list[Environment], int]:
        """Newest first. ``workspace_ids`` None means every workspace (admins)."""
        ...
    async def list_for_host(self, host_id: str) -> list[Environment]:
        """Every not-deleted environment whose disk lives on the host (any status)."""
        ...
    async def list_by_status(self, statuses: list[EnvStatus]) -> list[Environment]:
        """Ordered by ``queued_at`` then ``created_at`` (FIFO for the queue)."""
        ...
    async def list_autostop_due(self, now: datetime) -> list[Environment]:
        """Running environments whose ``autostop_due_at`` is ``now`` or earlier (an index
        range: the auto-stop sweep reads only what can be due), oldest due first."""
        ...
    async def held_resources(self) -> list[tuple[str, str, int, int]]:
        """(id, host id, CPU cores, memory GiB) of every placed environment whose status
        holds resources, in ``list_by_status`` order: what the fleet snapshot needs of
        them, without loading whole environments (every scheduling commit reads it)."""
        ...
    async def events(self, env_id: str, *, limit: int, offset: int) -> tuple[list[EnvironmentEvent], int]:
        """Oldest first."""
        ...
    async def change_epoch(self) -> int | None:
        """The committed epoch: it moves with every committed change to what listings,
        events and the fleet snapshot read (hosts, GPUs, allocations, ports, memberships
        included), in the same commit as the change. None: not known (nothing is cached)."""
        ...

    async def listings(
        self, *, workspace_id: str | None = None, member_id: str | None = None, env_id: str | None = None,
        statuses: list[EnvStatus] | None = None, limit: int, offset: int,
    ) -> tuple[list["EnvironmentListing"], int]:
        """Not-deleted environments newest first, each with its queue position, host name,
        GPUs and ports, and the total without paging — in a bounded number of queries.
        Filters combine: one workspace, the workspaces ``member_id`` belongs to, one id."""
        ...


class AllocationRepository(Protocol):
    """GPUs held by running environments, host ports held by environments until deleted.

    The database refuses a second live allocation of the same GPU or of the same port
    on a host (unique indexes): ``add_*`` raise ``Conflict`` then — at the latest on
    commit — and the caller retries with fresh state. Releasing deletes the rows.
    """

    async def add_gpus(self, allocations: list[GpuAllocation]) -> None: ...
    async def add_ports(self, ports: list[HostPort]) -> None: ...
    async def gpus(self) -> list[GpuAllocation]:
        """Every live GPU allocation (to build the scheduler's fleet snapshot)."""
        ...
    async def gpus_of(self, env_id: str) -> list[GpuAllocation]: ...
    async def ports_of(self, env_id: str) -> list[HostPort]: ...
    async def ports_on_host(self, host_id: str) -> set[int]: ...
    async def release_gpus(self, env_id: str) -> None:
        """Drop the environment's GPU allocations (stop: its ports stay held, idempotent)."""
        ...
    async def release_ports(self, env_id: str) -> None:
        """Drop the environment's host ports (idempotent)."""
        ...
    async def release(self, env_id: str) -> None:
        """Drop every GPU and port allocation of the environment (delete; idempotent)."""
        ...
