"""An inference service: replicas of one image + command serving HTTP on one port,
behind the platform's router, scaled on concurrency (``autoscaler.py``).

A replica is one container on one host (its GPUs, CPU and memory held while it exists),
publishing the service's port on the host's private address only: the router reaches
it, nobody else does. Replicas belong to a *generation*: an update of image, command,
variables or port bumps it, and the scaler replaces the old generation's replicas with
new ones — new ones ready first, old ones drained (no request in flight) before they go.

Replica states (server side): ``starting`` (placed; the agent is starting it) →
``running`` (its container runs; the router probes the health path and sends requests
only once it answers) → ``draining`` (no new requests; removed when the last one ended) ;
``failed`` (its container exited or could not start: replaced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.environments.variables import check_environment_name, check_variables
from remotegpu.domain.scheduling.models import MAX_GPUS_PER_REQUEST
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.workloads.autoscaler import MAX_REPLICAS, AutoscalePolicy
from remotegpu.domain.workloads.models import MAX_COMMAND_ARGS, MAX_COMMAND_CHARS

#: The service's autoscaling settings (its ``AutoscalePolicy``'s fields that users set).
POLICY_FIELDS = ("min_replicas", "max_replicas", "target_concurrency", "scale_down_delay_s", "scale_to_zero_after_s")

#: Prefix of replica node ids (``svc-<service id>.g<generation>.r<n>``).
REPLICA_PREFIX = "svc-"


class ServiceStatus(str, Enum):
    ACTIVE = "active"
    DELETED = "deleted"


@dataclass
class Replica:
    id: str  # node id: svc-<service>.g<generation>.r<n>
    generation: int
    host_id: str
    host_port: int
    address: str  # the host's private address: where the router reaches host_port
    gpu_uuids: list[str] = field(default_factory=list)
    gpu_indices: list[int] = field(default_factory=list)
    state: str = "starting"  # starting | running | draining | failed
    message: str = ""
    created_at: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "Replica":
        return cls(**d)


@dataclass
class InferenceService:
    id: str
    workspace_id: str
    owner_id: str
    name: str
    image: str
    command: list[str]
    port: int
    created_at: datetime
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/"
    gpus: int = 0
    gpu_model: str | None = None
    cpu_cores: int = 1
    memory_gib: int = 2
    # min/max replicas, target concurrency, scale-down and scale-to-zero delays (the API
    # shows them as flat fields of the service; see POLICY_FIELDS).
    autoscale: AutoscalePolicy = field(default_factory=AutoscalePolicy)
    public: bool = False
    status: ServiceStatus = ServiceStatus.ACTIVE
    status_message: str = ""
    generation: int = 0
    desired_replicas: int = 0
    replicas: list[Replica] = field(default_factory=list)
    token_hashes: list[str] = field(default_factory=list)  # API tokens scoped to this service
    # Dataset/model versions mounted read-only in every replica (as for training jobs).
    data_mounts: list[dict] = field(default_factory=list)
    next_replica: int = 0
    updated_at: datetime | None = None

    def new_replica_id(self) -> str:
        self.next_replica += 1
        return f"{REPLICA_PREFIX}{self.id}.g{self.generation}.r{self.next_replica}"


def validate_service(*, name: str, command: list[str], env: dict[str, str], port: int, health_path: str, gpus: int,
                     cpu_cores: int, memory_gib: int, min_replicas: int, max_replicas: int, target_concurrency: float,
                     scale_down_delay_s: float, scale_to_zero_after_s: float) -> None:
    check_environment_name(name)
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command) or len(command) > MAX_COMMAND_ARGS \
            or sum(len(a) for a in command) > MAX_COMMAND_CHARS or any("\x00" in a for a in command):
        raise InvalidInput("command must be a list of strings (may be empty: the image's own)", details={"field": "command"})
    check_variables(env, {})
    if not 1 <= port <= 65535:
        raise InvalidInput("port must be 1-65535", details={"field": "port"})
    if not health_path.startswith("/") or len(health_path) > 512 or any(c in health_path for c in "\r\n\x00 "):
        raise InvalidInput("health_path must be a path starting with /", details={"field": "health_path"})
    if not 0 <= gpus <= MAX_GPUS_PER_REQUEST:
        raise InvalidInput(f"gpus must be between 0 and {MAX_GPUS_PER_REQUEST}", details={"field": "gpus"})
    if cpu_cores < 1 or memory_gib < 1:
        raise InvalidInput("cpu_cores and memory_gib must be at least 1", details={"field": "cpu_cores"})
    if not 0 <= min_replicas <= max_replicas <= MAX_REPLICAS or max_replicas < 1:
        raise InvalidInput(f"replicas: 0 <= min_replicas <= max_replicas <= {MAX_REPLICAS}", details={"field": "min_replicas"})
    AutoscalePolicy(min_replicas=min_replicas, max_replicas=max_replicas, target_concurrency=target_concurrency,
                    scale_down_delay_s=scale_down_delay_s, scale_to_zero_after_s=scale_to_zero_after_s)
