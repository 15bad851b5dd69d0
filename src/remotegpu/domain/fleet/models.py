"""Fleet: GPU hosts and the GPUs they report.

A host is what an agent registers and heartbeats; its GPUs are the inventory the
agent read (pynvml, or a fake spec on machines without GPUs). Topology fields are
``None`` when unknown: the scheduler then treats every GPU as its own island.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import InvalidInput


class HostStatus(str, Enum):
    READY = "ready"
    CORDONED = "cordoned"  # keeps running work, takes nothing new
    DRAINING = "draining"  # like cordoned, and its work is being moved off / stopped
    OFFLINE = "offline"  # missed heartbeats; its environments are ``lost``

    @property
    def accepts_new_work(self) -> bool:
        return self is HostStatus.READY

    @property
    def is_admin_choice(self) -> bool:
        """ready / cordoned / draining: what an admin decides; offline is liveness, not a choice."""
        return self is not HostStatus.OFFLINE


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    model: str
    memory_mib: int
    numa_node: int | None = None
    # GPUs sharing an nvlink_group are connected by NVLink (directly or through
    # NVSwitch); the id is only meaningful within one host.
    nvlink_group: int | None = None
    healthy: bool = True


@dataclass(frozen=True)
class QuarantineEntry:
    """A container or volume of this installation that the host's agent found without
    the server asking for it (e.g. after the agent registered again, or a database was
    restored): stopped and kept, never removed, until an operator decides.

    ``host_id`` is the host it was made for (its label; "" when it carries none),
    ``since`` when the server first heard of it."""

    env_id: str
    host_id: str
    since: datetime


@dataclass(frozen=True)
class ClusterNode:
    """One node of the Kubernetes cluster a host's agent drives (that host stands for the
    whole cluster): as the agent last reported it. ``gpu_allocated`` counts the GPUs the
    platform's own Pods on the node request; ``labels`` are the node's GPU and topology
    labels (e.g. ``nvidia.com/gpu.product``), not all of them."""

    name: str
    ready: bool
    schedulable: bool
    gpu_capacity: int = 0
    gpu_allocatable: int = 0
    gpu_allocated: int = 0
    cpu: str = ""  # allocatable, as Kubernetes writes quantities ("64", "63500m")
    memory: str = ""  # allocatable ("512Gi")
    labels: dict[str, str] = field(default_factory=dict)


#: At most this many nodes are kept per host (a report may not flood the row).
MAX_CLUSTER_NODES = 5000


OVERCOMMIT_RANGE = (1.0, 10.0)  # admin-set CPU / memory overcommit ratio bounds


@dataclass
class Host:
    """A GPU host.

    ``status`` is what the host is now: ``offline`` while its agent is silent, else
    ``admin_status``, the admin's scheduling choice (ready / cordoned / draining).
    The choice is kept apart so that it survives the host going offline and coming
    back: a host cordoned for maintenance stays cordoned after a reboot. Change the
    two through the methods below, which keep that rule.
    """

    id: str
    name: str
    status: HostStatus = HostStatus.READY
    labels: dict[str, str] = field(default_factory=dict)
    cpu_cores: int = 0
    memory_gib: int = 0
    disk_gib: int = 0
    address: str = ""  # public: where users reach the published SSH ports
    # Where the platform (and only it) reaches this host's private services (Jupyter,
    # the terminal's SSH bridge): the agent's --private-address. "" from older agents.
    private_address: str = ""
    last_heartbeat_at: datetime | None = None
    gpus: list[Gpu] = field(default_factory=list)
    created_at: datetime | None = None
    # Credentials, stored hashed: the one-time join token an admin hands to the
    # agent, and the agent's own token it gets back at registration.
    join_token_hash: str | None = None
    agent_token_hash: str | None = None
    runtime: str = ""  # "docker" | "local" | "memory", as the agent reports it
    runtime_healthy: bool = False
    fake_gpus: bool = False  # the inventory is a configured fake: no device passthrough
    gpu_utilization: dict[str, int] = field(default_factory=dict)
    # Host ports for SSH / Jupyter: below Linux's ephemeral range (32768-60999), where
    # outgoing connections would otherwise take ports we hand out.
    port_range: tuple[int, int] = (20000, 29999)
    admin_status: HostStatus = HostStatus.READY  # never offline
    # The admin allowed this host's agent to report loopback addresses (an agent on the
    # server's own machine, the embedded one); see domain/fleet/addresses.py.
    allow_loopback: bool = False
    # GPUs the agent reported that another host already owns: uuid → owner host id.
    # They are kept out of this host's inventory (never scheduled here) and shown to admins.
    gpu_conflicts: dict[str, str] = field(default_factory=dict)
    # What its agent holds in quarantine, as of its last healthy report.
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    # Admin-set overcommit: the scheduler counts CPU / memory requests against
    # capacity × ratio, while each container still gets its full limits (as requests
    # vs limits in Kubernetes). 1.0 = no overcommit.
    cpu_overcommit: float = 1.0
    memory_overcommit: float = 1.0
    # Kubernetes hosts only: the cluster's nodes, as the agent last reported them.
    cluster_nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def schedulable_cpu_cores(self) -> int:
        return int(self.cpu_cores * self.cpu_overcommit + 1e-9)

    @property
    def schedulable_memory_gib(self) -> int:
        return int(self.memory_gib * self.memory_overcommit + 1e-9)

    def set_overcommit(self, cpu: float | None = None, memory: float | None = None) -> None:
        """Change the overcommit ratios (None keeps one); each within OVERCOMMIT_RANGE."""
        low, high = OVERCOMMIT_RANGE
        for name, value in (("cpu_overcommit", cpu), ("memory_overcommit", memory)):
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidInput(f"{name} must be between {low} and {high}", details={"field": name})
            setattr(self, name, float(value))

    def __post_init__(self) -> None:
        if not self.admin_status.is_admin_choice:
            raise InvalidInput("a host's admin status is ready, cordoned or draining", details={"field": "admin_status"})

    def set_admin_status(self, choice: HostStatus) -> None:
        """cordon / drain / uncordon: recorded whatever the liveness; an offline host
        stays offline (and takes nothing) until its agent reports again."""
        if not choice.is_admin_choice:
            raise InvalidInput("a host can be made ready, cordoned or draining, not offline", details={"field": "status"})
        self.admin_status = choice
        if self.status is not HostStatus.OFFLINE:
            self.status = choice

    def take_inventory(self, reported: list[Gpu], owners: dict[str, str]) -> bool:
        """Take the GPUs the agent reported, less those another host owns (``owners``:
        uuid → owning host id, any host). An agent is trusted with its own host only:
        a UUID registered elsewhere stays there — whoever reported it first keeps it
        until that host stops reporting it or an admin removes that host. Returns True
        when the set of conflicts changed (an admin should hear of it)."""
        conflicts = {g.uuid: owners[g.uuid] for g in reported if owners.get(g.uuid, self.id) != self.id}
        self.gpus = [g for g in reported if g.uuid not in conflicts]
        changed = conflicts != self.gpu_conflicts
        self.gpu_conflicts = conflicts
        return changed

    def conditions(self, host_names: dict[str, str] | None = None) -> list["HostCondition"]:
        """What an admin should look at (empty: nothing wrong). ``host_names``: id → name,
        to name the owners of conflicting GPUs."""
        names = host_names or {}
        return [
            HostCondition(
                "gpu_uuid_conflict",
                f"the agent reports GPU {uuid}, which host {names.get(owner, owner)} owns: "
                "it is not scheduled here; check this host (a copied or compromised agent?) or remove the other",
                {"uuid": uuid, "owner_host_id": owner, "owner_host_name": names.get(owner, "")},
            )
            for uuid, owner in sorted(self.gpu_conflicts.items())
        ]

    def mark_offline(self) -> None:
        """The agent missed its heartbeats: the admin's choice is kept for its return."""
        self.status = HostStatus.OFFLINE

    def mark_online(self) -> bool:
        """The agent reported: an offline host returns to the admin's choice. True when it came back."""
        if self.status is not HostStatus.OFFLINE:
            return False
        self.status = self.admin_status
        return True


@dataclass(frozen=True)
class HostCondition:
    """Something wrong with a host that an admin should see (``GET /api/v1/hosts``)."""

    code: str
    message: str
    details: dict[str, str] = field(default_factory=dict)


# --- fake inventories -------------------------------------------------------------

# Fixed namespace so a fake inventory gets the same UUIDs on every restart: the
# allocations stored in the database must keep pointing at the same GPUs.
_FAKE_NAMESPACE = uuid.UUID("6f1c1d52-2b7e-4c55-9d59-0d6c3f1e7a10")
_ENTRY_RE = re.compile(r"^(\d+)\s*[xX]\s*(\S.*)$")
_MEMORY_RE = re.compile(r"(\d+)\s*GB\b", re.IGNORECASE)
FAKE_GROUP_SIZE = 4  # like an HGX board half: 4 GPUs per NVLink island / NUMA node
MAX_FAKE_GPUS = 64


def guess_memory_mib(model: str) -> int:
    """``NVIDIA H100 80GB HBM3`` → 81920; 0 when the name carries no size."""
    match = _MEMORY_RE.search(model)
    return int(match.group(1)) * 1024 if match else 0


def parse_fake_gpus(spec: str, *, seed: str = "") -> list[Gpu]:
    """Build a fake inventory from ``"4xNVIDIA A100-SXM4-80GB,2xNVIDIA H100 80GB HBM3"``.

    Indices run across the whole spec. Each entry is cut into groups of up to
    ``FAKE_GROUP_SIZE`` GPUs sharing one NVLink group and NUMA node (GPUs of different
    models never share a group). UUIDs are derived from ``seed`` (e.g. the host name),
    the index and the model, so they are stable across restarts and distinct between
    fake hosts with different seeds. An empty spec is an empty inventory.
    """
    gpus: list[Gpu] = []
    group = 0
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            if spec.strip():
                raise InvalidInput(f"fake GPU spec {spec!r} has an empty entry", details={"spec": spec})
            continue
        match = _ENTRY_RE.match(entry)
        if not match:
            raise InvalidInput(
                f"fake GPU entry {entry!r} must look like 'NxMODEL', e.g. '4xNVIDIA A100-SXM4-80GB'",
                details={"spec": spec},
            )
        count, model = int(match.group(1)), match.group(2).strip()
        if count < 1:
            raise InvalidInput(f"fake GPU entry {entry!r} needs a count of at least 1", details={"spec": spec})
        if len(gpus) + count > MAX_FAKE_GPUS:
            raise InvalidInput(f"fake GPU spec asks for more than {MAX_FAKE_GPUS} GPUs", details={"spec": spec})
        for offset in range(count):
            index = len(gpus)
            gid = group + offset // FAKE_GROUP_SIZE
            gpus.append(
                Gpu(
                    index=index,
                    uuid="GPU-" + str(uuid.uuid5(_FAKE_NAMESPACE, f"{seed}/{index}/{model}")),
                    model=model,
                    memory_mib=guess_memory_mib(model),
                    numa_node=gid,
                    nvlink_group=gid,
                )
            )
        group += -(-count // FAKE_GROUP_SIZE)
    return gpus
