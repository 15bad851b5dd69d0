from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


from remotegpu.domain.environments.models import DEFAULT_DISK_GIB, MAX_DISK_GIB, Desired, EnvStatus
from remotegpu.domain.environments.variables import MAX_VALUE_LENGTH, MAX_VARIABLES, NAME_RULE
from remotegpu.domain.fleet.models import HostStatus
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict

_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_Variables = dict[Annotated[str, StringConstraints(pattern=_ENV_KEY)], Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]]
_RESERVED_DOC = (
    "Reserved names are refused (422 `reserved_variable`): NVIDIA_*, CUDA_*, LD_*, PYTHON*, REMOTEGPU_*, JUPYTER_*, "
    "SSH_*, DOCKER_*, PATH, HOME, SHELL, USER and a few more (see domain/environments/variables.py)."
)


class DataMountIn(Strict):
    kind: Literal["dataset", "model"]
    name: str = Field(min_length=1, max_length=64, description="the dataset's or model's name in the workspace (or its id)")
    version: str = Field("latest", min_length=1, max_length=64, description="'latest', a tag or a version number")


class DataMountOut(BaseModel):
    kind: str
    repository_id: str
    name: str
    version: str
    path: str


class EnvironmentIn(Strict):
    name: str = Field(min_length=1, max_length=64, description=f"{NAME_RULE}; anything else answers 422 `invalid_name`")
    workspace_id: str = Field(min_length=1, max_length=64)
    image: str | None = Field(
        None, min_length=1, max_length=255,
        description="default: the platform's base image; a catalog image's reference, or one matching "
                    "REMOTEGPU_ALLOWED_IMAGES (else 422 `image_not_allowed`); another workspace's private image: 404",
    )
    image_id: str | None = Field(
        None, min_length=1, max_length=64,
        description="a catalog image (`GET /api/v1/images`) instead of `image`: 404 unless visible to the workspace, "
                    "409 `image_not_ready` while it is being saved or built",
    )
    gpu_count: int = Field(0, ge=0, le=8)
    gpu_model: str | None = Field(None, min_length=1, max_length=128)
    cpu_cores: int = Field(2, ge=1, le=256)
    memory_gib: int = Field(8, ge=1, le=4096)
    disk_gib: int = Field(
        DEFAULT_DISK_GIB, ge=1, le=MAX_DISK_GIB,
        description="size of its disk (kept while stopped), counted against the workspace's storage quota until deleted",
    )
    env: _Variables = Field(
        default_factory=dict, max_length=MAX_VARIABLES,
        description="extra environment variables; their values are shown to those who may operate the environment. "
        + _RESERVED_DOC,
    )
    secret_env: _Variables = Field(
        default_factory=dict, max_length=MAX_VARIABLES,
        description="secret environment variables (write-only): stored encrypted, never returned (names only), "
        "set in the container's environment like `env`. A name may not be in both.",
    )
    stop_after_minutes: int | None = Field(None, ge=1, le=60 * 24 * 365)
    idle_stop_minutes: int | None = Field(None, ge=1, le=60 * 24 * 30)
    idle_gpu_threshold: int = Field(5, ge=0, le=100)
    shared: bool = Field(False, description="members of the workspace may access it too")
    mounts: list[DataMountIn] = Field(
        default_factory=list, max_length=20,
        description="dataset/model versions mounted read-only at /datasets/<name> or /models/<name>; "
        "the version ('latest', a tag or a number) is resolved at every start",
    )


class StartIn(Strict):
    gpu: bool = Field(True, description="false: start without GPUs (cheap data work)")


class EnvironmentListQuery(PageQuery):
    workspace_id: str | None = Field(None, max_length=64)
    status: EnvStatus | None = None


class GpuOut(BaseModel):
    index: int
    uuid: str
    model: str
    memory_mib: int


class PortOut(BaseModel):
    purpose: str
    port: int


class VariableOut(BaseModel):
    name: str
    secret: bool = Field(description="write-only: its value is never returned")
    value: str | None = Field(description="null for secret variables, and for callers who may not operate the environment")


class EnvironmentOut(BaseModel):
    id: str
    name: str
    workspace_id: str
    owner_id: str
    status: EnvStatus
    desired: Desired
    status_message: str
    queue_position: int | None
    image: str
    gpu_count: int
    gpu_model: str | None
    with_gpu: bool
    cpu_cores: int
    memory_gib: int
    disk_gib: int
    host_id: str | None
    host_name: str | None
    gpus: list[GpuOut]
    ports: list[PortOut]
    env: dict[str, str] = Field(
        description="plain (non-secret) variables with their values; empty for callers who may not operate the "
        "environment (viewers, other members): `variables` still names them"
    )
    variables: list[VariableOut] = Field(description="every variable by name, plain ones first; values as in `env`")
    stop_after_minutes: int | None
    idle_stop_minutes: int | None
    shared: bool
    created_at: datetime
    started_at: datetime | None
    mounts: list[DataMountOut] = Field(default_factory=list, description="dataset/model versions mounted read-only")


class EnvironmentEventOut(BaseModel):
    at: datetime
    from_status: EnvStatus | None
    to_status: EnvStatus
    reason: str


class SshAccessOut(BaseModel):
    host: str
    port: int
    user: str
    command: str
    config: str
    known_hosts: str | None = Field(
        None, description="a ~/.ssh/known_hosts line pinning the key this environment's sshd presents "
        "(through the SSH gateway: the gateway's own key); null until it is known",
    )
    via: Literal["gateway", "direct"] = Field(
        "direct", description="gateway: the platform's SSH gateway, logging in as the environment's id; "
        "direct: the environment's own published SSH port",
    )
    jump_command: str | None = Field(
        None, description="through the gateway as a jump host (ProxyJump): end to end with your key to the environment's sshd",
    )


class JupyterAccessOut(BaseModel):
    url: str


class TerminalAccessOut(BaseModel):
    path: str


class DesktopAccessOut(BaseModel):
    url: str = Field(description="the remote desktop's page on the environment's own app host (desktop images only)")


class AccessOut(BaseModel):
    ssh: SshAccessOut | None = Field(description="the default way in: the SSH gateway when configured, else the published port")
    ssh_direct: SshAccessOut | None = Field(
        None, description="the environment's own published SSH port, when the gateway is the default",
    )
    jupyter: JupyterAccessOut | None
    terminal: TerminalAccessOut | None
    desktop: DesktopAccessOut | None = None


class GpuTypeQuery(Strict):
    """The request being composed: each model answers whether it would start now."""

    gpu_count: int = Field(1, ge=0, le=8)
    cpu_cores: int = Field(1, ge=1, le=4096)
    memory_gib: int = Field(1, ge=1, le=65536)


class GpuTypeOut(BaseModel):
    model: str
    total: int
    free: int
    memory_mib: int
    startable_now: bool = Field(
        description="gpu_count of this model with cpu_cores and memory_gib would start at once "
        "(overcommit applied; hosts held for earlier queued requests excluded)"
    )
    cpu_cores_free: int = Field(description="most vCPU free now on one host with gpu_count of this model free")
    memory_gib_free: int = Field(description="most GiB free now on one host with gpu_count of this model free")
    max_cpu_cores: int = Field(description="most vCPU any host with gpu_count of this model offers when empty")
    max_memory_gib: int = Field(description="most GiB any host with gpu_count of this model offers when empty")
    ever_fits: bool = Field(description="false: no host could ever hold this request (create answers 409 never_fits)")
    hourly_price: int | None = Field(None, description="price of one GPU of this model per hour now, in minor units "
                                                      "(GET /api/v1/billing/prices); null: not priced")


class GpuTypeList(BaseModel):
    items: list[GpuTypeOut]
    total: int


class HostIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$", description="a label (no control characters)")
    address: str = Field("", max_length=255, description="public address users reach SSH ports on: a DNS name or an IP address")
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    allow_loopback: bool = Field(
        False, description="let this host's agent report loopback addresses (an agent on the server's own machine)"
    )


class HostConditionOut(BaseModel):
    code: str = Field(description="e.g. `gpu_uuid_conflict`: the agent reports a GPU another host owns (not scheduled here)")
    message: str
    details: dict[str, str]


class HostPatchIn(Strict):
    cpu_overcommit: float | None = Field(
        None, ge=1.0, le=10.0, description="schedule CPU requests against cores × this ratio (1.0: no overcommit)"
    )
    memory_overcommit: float | None = Field(
        None, ge=1.0, le=10.0, description="schedule memory requests against GiB × this ratio (1.0: no overcommit)"
    )


class HostRemoveQuery(Strict):
    force: bool = Field(False, description="remove even while the host is online with environments (they turn lost)")


class HostTokenOut(BaseModel):
    host_id: str
    join_token: str = Field(description="one-time token for `remotegpu agent --token`; shown only here. "
                            "The agent's previous token no longer works.")


class HostGpuOut(GpuOut):
    numa_node: int | None
    nvlink_group: int | None
    healthy: bool
    allocated: bool
    utilization: int | None


class QuarantinedOut(BaseModel):
    env_id: str = Field(description="the environment id its container / volume carries")
    host_id: str = Field(description="the host it was made for (its label; \"\" when none): after an agent registered "
                                     "again, its previous host id")
    since: datetime = Field(description="when the agent first reported it")


class ClusterNodeOut(BaseModel):
    name: str
    ready: bool = Field(description="the node's Ready condition")
    schedulable: bool = Field(description="false when the node is cordoned (spec.unschedulable)")
    gpu_capacity: int
    gpu_allocatable: int = Field(description="what the device plugin offers for Pods")
    gpu_allocated: int = Field(description="GPUs the platform's Pods bound to this node request")
    cpu: str = Field(description="allocatable CPU, as Kubernetes writes it (e.g. `64`, `63500m`)")
    memory: str = Field(description="allocatable memory, as Kubernetes writes it (e.g. `512Gi`)")
    labels: dict[str, str] = Field(description="GPU and topology labels, e.g. `nvidia.com/gpu.product`")


class HostOut(BaseModel):
    id: str
    name: str
    status: HostStatus = Field(description="offline while the agent is silent, else `schedulable`")
    schedulable: HostStatus = Field(
        description="the admin's choice (ready, cordoned or draining; set by cordon / uncordon / drain), "
        "kept while the host is offline and taken up again when its agent reports"
    )
    address: str
    private_address: str = Field(description="where the platform reaches the host's private services (agent --private-address)")
    labels: dict[str, str]
    cpu_cores: int
    memory_gib: int
    disk_gib: int
    runtime: str
    runtime_healthy: bool
    fake_gpus: bool
    last_heartbeat_at: datetime | None
    gpus: list[HostGpuOut]
    environments: int
    allow_loopback: bool = Field(False, description="its agent may report loopback addresses")
    conditions: list[HostConditionOut] = Field(default_factory=list, description="what an admin should look at; empty when healthy")
    quarantined: list[QuarantinedOut] = Field(
        default_factory=list,
        description="containers/volumes of this installation on the host that the server did not ask for (e.g. "
        "after the agent registered again): stopped and kept, never removed by the agent (README: Quarantine)",
    )
    cpu_overcommit: float = Field(1.0, description="CPU requests are scheduled against cpu_cores × this (limits stay whole)")
    memory_overcommit: float = Field(1.0, description="memory requests are scheduled against memory_gib × this")
    schedulable_cpu_cores: int = Field(0, description="cpu_cores × cpu_overcommit, rounded down: what the scheduler hands out")
    schedulable_memory_gib: int = Field(0, description="memory_gib × memory_overcommit, rounded down")
    cluster_nodes: list[ClusterNodeOut] = Field(
        default_factory=list,
        description="a Kubernetes host (runtime `kubernetes`: one host stands for the cluster): the cluster's nodes "
        "as its agent last reported them; empty for other hosts",
    )


class HostCreatedOut(HostOut):
    join_token: str = Field(description="one-time token for `remotegpu agent --token`; shown only here")


class AgentRegisterIn(Strict):
    join_token: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=64)
    report: dict


class AgentRegisteredOut(BaseModel):
    host_id: str
    agent_token: str


class AgentReportIn(BaseModel):
    """A host report (see remotegpu.adapters.fleet.wire); validated there."""

    model_config = ConfigDict(extra="allow")


class AgentKnownIn(Strict):
    desired: str = Field(max_length=16)
    generation: int = Field(ge=0)


class AgentWaitIn(Strict):
    timeout_seconds: float = Field(25.0, ge=0.5, le=60.0, description="answer after this long without work")
    known: dict[str, AgentKnownIn] = Field(default_factory=dict, max_length=10_000,
                                           description="env id → desired state of the agent's last heartbeat reply")


class AgentWaitOut(BaseModel):
    work: bool = Field(description="true: the desired state changed, beat now")


class AgentReplyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
