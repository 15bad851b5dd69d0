"""The environment aggregate and its lifecycle.

Level-triggered: the API sets ``desired`` (running / stopped / deleted); the agent
drives the runtime toward it and reports what it observed; ``status`` is the
platform's view of where the environment is on that road. Every status change is an
``EnvironmentEvent`` with a reason, the timeline users see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import Conflict, InvalidInput
from remotegpu.domain.shared.ids import new_id

MAX_GPUS = 8
DEFAULT_DISK_GIB = 50
MAX_DISK_GIB = 4096
SSH_CONTAINER_PORT = 22
JUPYTER_CONTAINER_PORT = 8888
#: Where the base image's JupyterLab also listens (deploy/images/base/jupyter_unix_socket.py).
JUPYTER_CONTAINER_SOCKET = "/run/remotegpu/jupyter.sock"


class EnvStatus(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"
    LOST = "lost"

    @property
    def holds_resources(self) -> bool:
        """Statuses in which GPUs, CPU, memory and host ports are allocated."""
        return self in _HOLDING

    @property
    def holds_disk(self) -> bool:
        """Statuses in which the environment's disk exists (or is reserved): every one
        but deleted — a stopped environment keeps its disk, a deleting one still has it."""
        return self is not EnvStatus.DELETED


_HOLDING = {EnvStatus.STARTING, EnvStatus.RUNNING, EnvStatus.LOST}


class Desired(str, Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


@dataclass
class EnvironmentEvent:
    id: str
    environment_id: str
    at: datetime
    from_status: EnvStatus | None
    to_status: EnvStatus
    reason: str


@dataclass
class Environment:
    id: str
    name: str
    workspace_id: str
    owner_id: str
    image: str
    gpu_count: int
    gpu_model: str | None
    cpu_cores: int
    memory_gib: int
    created_at: datetime
    updated_at: datetime
    disk_gib: int = DEFAULT_DISK_GIB  # size of its disk (the volume at /root/workspace), kept while stopped
    status: EnvStatus = EnvStatus.QUEUED
    desired: Desired = Desired.RUNNING
    env: dict[str, str] = field(default_factory=dict)
    host_id: str | None = None  # where its disk lives once it first started
    with_gpu: bool = True  # False: "start without GPU" for cheap data work
    generation: int = 0  # bumped by restart: the agent recreates the container
    queued_at: datetime | None = None
    started_at: datetime | None = None
    stop_after_minutes: int | None = None
    idle_stop_minutes: int | None = None
    idle_gpu_threshold: int = 5  # percent utilisation under which a GPU counts as idle
    idle_since: datetime | None = None
    last_activity_at: datetime | None = None
    status_message: str = ""
    jupyter_token: str = ""  # server-side secret; never returned by the API
    # The public key its sshd presents ("ssh-ed25519 AAAA..."), as the agent read it from
    # the container: users pin it (known_hosts), the web terminal's SSH bridge checks it.
    ssh_host_key: str = ""
    shared: bool = False  # members of the workspace may access it too
    # The GPUs it held when it last stopped: asked for first when it starts again, so
    # the stopped container is started as it was (no recreation for other devices).
    last_gpu_uuids: list[str] = field(default_factory=list)
    # Filled in by the events collected during a use case, saved by the repository.
    pending_events: list[EnvironmentEvent] = field(default_factory=list, repr=False, compare=False)

    @property
    def gpus_wanted(self) -> int:
        return self.gpu_count if self.with_gpu else 0

    def transition(self, to: EnvStatus, reason: str, now: datetime) -> None:
        if to == self.status:
            if reason and reason != self.status_message:
                self.status_message = reason
            return
        if to not in _ALLOWED[self.status]:
            raise Conflict(
                f"environment cannot go from {self.status.value} to {to.value}",
                code="invalid_transition", details={"from": self.status.value, "to": to.value},
            )
        self.pending_events.append(EnvironmentEvent(new_id(), self.id, now, self.status, to, reason))
        self.status = to
        self.status_message = reason
        self.updated_at = now
        if to is EnvStatus.RUNNING:
            self.started_at = self.started_at or now
        if to in (EnvStatus.STOPPED, EnvStatus.FAILED, EnvStatus.DELETED, EnvStatus.QUEUED):
            self.started_at = None
            self.idle_since = None

    # --- what users may ask for, by status ------------------------------------------
    def check_can_start(self) -> None:
        if self.status not in (EnvStatus.STOPPED, EnvStatus.FAILED):
            raise Conflict(f"only a stopped or failed environment can be started (it is {self.status.value})", code="invalid_state")

    def check_can_stop(self) -> None:
        if self.status not in (EnvStatus.QUEUED, EnvStatus.STARTING, EnvStatus.RUNNING, EnvStatus.LOST):
            raise Conflict(f"a {self.status.value} environment cannot be stopped", code="invalid_state")

    def check_can_restart(self) -> None:
        if self.status is not EnvStatus.RUNNING:
            raise Conflict(f"only a running environment can be restarted (it is {self.status.value})", code="invalid_state")

    def check_can_delete(self) -> None:
        if self.status in (EnvStatus.DELETING, EnvStatus.DELETED):
            raise Conflict("the environment is already being deleted", code="invalid_state")


_ALLOWED: dict[EnvStatus, set[EnvStatus]] = {
    EnvStatus.QUEUED: {EnvStatus.STARTING, EnvStatus.STOPPED, EnvStatus.DELETING, EnvStatus.DELETED, EnvStatus.FAILED},
    EnvStatus.STARTING: {EnvStatus.RUNNING, EnvStatus.STOPPING, EnvStatus.FAILED, EnvStatus.LOST, EnvStatus.DELETING, EnvStatus.QUEUED},
    EnvStatus.RUNNING: {EnvStatus.STARTING, EnvStatus.STOPPING, EnvStatus.FAILED, EnvStatus.LOST, EnvStatus.DELETING},
    EnvStatus.STOPPING: {EnvStatus.STOPPED, EnvStatus.DELETING, EnvStatus.FAILED, EnvStatus.LOST},
    EnvStatus.STOPPED: {EnvStatus.STARTING, EnvStatus.QUEUED, EnvStatus.DELETING},
    EnvStatus.FAILED: {EnvStatus.STARTING, EnvStatus.QUEUED, EnvStatus.STOPPED, EnvStatus.DELETING},
    EnvStatus.LOST: {EnvStatus.RUNNING, EnvStatus.STARTING, EnvStatus.STOPPING, EnvStatus.STOPPED, EnvStatus.FAILED, EnvStatus.DELETING},
    EnvStatus.DELETING: {EnvStatus.DELETED, EnvStatus.LOST},
    EnvStatus.DELETED: set(),
}


_SSH_HOST_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/]+={0,3}")


def ssh_host_key_of(text: str) -> str:
    """The ``type base64`` part of an OpenSSH public key file's first line (its comment
    dropped), or "" when it is not one: the file comes from inside a container."""
    line = text.strip().split("\n", 1)[0]
    key = " ".join(line.split()[:2])
    return key if len(key) <= 1024 and _SSH_HOST_KEY.fullmatch(key) else ""


def validate_request(gpu_count: int, cpu_cores: int, memory_gib: int, name: str, disk_gib: int = DEFAULT_DISK_GIB) -> None:
    if not 0 <= gpu_count <= MAX_GPUS:
        raise InvalidInput(f"gpu_count must be between 0 and {MAX_GPUS}", details={"field": "gpu_count"})
    if cpu_cores < 1 or memory_gib < 1:
        raise InvalidInput("cpu_cores and memory_gib must be at least 1", details={"field": "cpu_cores"})
    if not 1 <= disk_gib <= MAX_DISK_GIB:
        raise InvalidInput(f"disk_gib must be between 1 and {MAX_DISK_GIB}", details={"field": "disk_gib"})
    if not name.strip() or len(name) > 64:
        raise InvalidInput("name must be 1-64 characters", details={"field": "name"})


@dataclass(frozen=True)
class HostPort:
    """A host port allocated to an environment (unique per host among live environments)."""

    host_id: str
    port: int
    purpose: str  # "ssh" | "jupyter"
    environment_id: str


@dataclass(frozen=True)
class GpuAllocation:
    """A GPU held by an environment (unique per GPU among live environments)."""

    environment_id: str
    host_id: str
    gpu_uuid: str
