"""What an agent and the server tell each other on every heartbeat.

The agent reports its inventory and the observed state of every environment its
runtime manages; the reply carries the desired state of every environment placed on
that host. One round trip does both (level-triggered: nothing is lost if a beat is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.application.workloads.ports import JobNodeSpec
from remotegpu.domain.fleet.models import ClusterNode, Gpu

DEFAULT_HEARTBEAT_SECONDS = 5.0
MISSED_BEATS_BEFORE_OFFLINE = 3


@dataclass(frozen=True)
class ObservedEnvironment:
    env_id: str
    status: str  # RuntimeState.status: running | stopped | missing | failed
    generation: int | None = None
    message: str = ""
    # SSH connections established to the environment right now: > 0 counts as use
    # (the idle policy's clock restarts), like Jupyter or the web terminal.
    ssh_sessions: int = 0


@dataclass(frozen=True)
class QuarantinedEnvironment:
    """An environment whose container or volume carries the agent's labels but that the
    server did not ask for: stopped and kept, never removed by the agent."""

    env_id: str
    host_id: str = ""  # the host it was made for (its label); "" when unknown


@dataclass(frozen=True)
class ImageJobReport:
    """Where one image job (save or build) stands on the agent. ``log`` is the agent's
    log from character ``log_from`` on (the server keeps what it has not got yet)."""

    job_id: str
    status: str  # running | succeeded | failed | cancelled
    log_from: int = 0
    log: str = ""
    progress: str = ""
    digest: str = ""
    size_bytes: int = 0
    layers: int = 0
    error: str = ""


@dataclass(frozen=True)
class ImageJobOrder:
    """An image job for this host: run it (until it is over), or stop it (``cancel``).
    ``auth`` = (registry, username, password): pushes ``target`` and pulls the base."""

    job_id: str
    kind: str  # save | build
    target: str
    env_id: str | None = None
    dockerfile: str = ""
    context: str = ""  # base64 tar
    base_reference: str = ""
    timeout_seconds: int = 3600
    cpu_cores: int = 2
    memory_gib: int = 4
    cancel: bool = False
    log_received: int = 0
    auth: tuple[str, str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HostReport:
    gpus: list[Gpu]
    cpu_cores: int
    memory_gib: int
    disk_gib: int
    runtime: str
    runtime_healthy: bool
    fake_gpus: bool = False
    observed: list[ObservedEnvironment] = field(default_factory=list)
    utilization: dict[str, int] = field(default_factory=dict)
    address: str = ""  # where users reach this host's published ports (SSH)
    # Where the platform (only it) reaches this host's private ports (Jupyter) and its
    # environments' SSH for the web terminal: the host's private-network address.
    private_address: str = ""
    agent_version: str = ""
    quarantined: list[QuarantinedEnvironment] = field(default_factory=list)
    image_jobs: list[ImageJobReport] = field(default_factory=list)
    # Catalog references present on this host (asked for in ``HeartbeatReply.catalog``).
    images: list[str] = field(default_factory=list)
    # Training-job nodes (application/workloads): their containers and new log bytes.
    job_nodes: list["ObservedJobNode"] = field(default_factory=list)
    job_logs: list["JobLogChunk"] = field(default_factory=list)
    # True only when the agent's job runtime listed its nodes: otherwise (it did not answer,
    # the agent has none, an older agent) ``job_nodes`` says nothing, no node is taken for gone.
    jobs_healthy: bool = False
    # A Kubernetes runtime's agent: the cluster's nodes (the fleet view lists them).
    cluster_nodes: list[ClusterNode] = field(default_factory=list)


@dataclass(frozen=True)
class ObservedJobNode:
    node_id: str
    status: str  # JobNodeState.status: running | exited | failed | missing
    exit_code: int | None = None
    message: str = ""
    log_size: int = 0


@dataclass(frozen=True)
class JobLogChunk:
    """Bytes ``offset``.. of one node's log (the server keeps them; repeated bytes are skipped)."""

    node_id: str
    offset: int
    data: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class DesiredJobNode:
    node_id: str
    desired: str  # running | stopped | removed
    spec: JobNodeSpec | None = None  # set when desired is running
    log_offset: int = 0  # bytes of its log the server already keeps: send from here
    # With ``removed``: keep the node's network for later nodes of its group (a service
    # scaled to zero comes back faster). False: drop it once no container uses it.
    keep_network: bool = False
    # With ``stopped``: the node's exited container holds its job's output at this path:
    # copy it out and send it (application/workloads/outputs.py); keep the container.
    collect_output: str = ""


@dataclass(frozen=True)
class DesiredEnvironment:
    env_id: str
    desired: str  # Desired: running | stopped | deleted
    generation: int = 0
    spec: RuntimeSpec | None = None  # set when desired is running
    # Public keys the agent keeps in the environment's /root/.ssh/authorized_keys (its
    # managed block), written whenever they change — no restart. None: leave them alone.
    authorized_keys: list[str] | None = None
    # The environment's host key, private half (OpenSSH PEM), generated by the server: the
    # agent installs it as the container's /etc/ssh/ssh_host_ed25519_key (sshd reloaded).
    # None: leave the container's host keys alone (a runtime without sshd, an old server).
    ssh_host_private_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HeartbeatReply:
    host_id: str
    desired: list[DesiredEnvironment]
    interval_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    image_jobs: list[ImageJobOrder] = field(default_factory=list)
    # References of catalog images: the agent reports which it has (``HostReport.images``)
    # and pulls those marked preload (``preload``).
    catalog: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)
    # (registry, username, password): pulls from the platform's registry (preloads).
    registry_auth: tuple[str, str, str] | None = field(default=None, repr=False)
    job_nodes: list[DesiredJobNode] = field(default_factory=list)
