"""A training job: N nodes × G GPUs running one command until it ends.

Lifecycle::

    pending → queued → starting → running → succeeded | failed | cancelled | timed_out
                 ↑________ retry (the whole gang) ______|

``pending``: just created, not yet seen by the scheduler (it lasts only inside the
create transaction: the job is placed at once or queued). ``queued``: waits for all of
its nodes at once (gang). ``starting``: every node's GPUs are held; the agents are
starting the containers. ``running``: every node's container runs. A node that exits
non-zero (or is lost) fails the gang: every other node is stopped, and the job either
goes back to ``queued`` for another attempt (``max_retries`` left) or ends ``failed``.
All nodes exiting 0 → ``succeeded``. GPUs are held only in ``starting``/``running``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.environments.variables import check_environment_name, check_variables
from remotegpu.domain.scheduling.models import MAX_GPUS_PER_REQUEST
from remotegpu.domain.shared.errors import Conflict, InvalidInput

MAX_NODES = 64
MAX_RETRIES = 10
MAX_COMMAND_ARGS = 256
MAX_COMMAND_CHARS = 16384
MAX_TIME_LIMIT_MINUTES = 60 * 24 * 30
PRIORITY_RANGE = (-100, 100)
#: The port the node of rank 0 listens on for the rendezvous (torchrun's default).
MASTER_PORT = 29500
#: Where the hostfile (one line per node: ``address slots=G``, MPI style) lies in every node.
HOSTFILE_PATH = "/etc/remotegpu/hostfile"
#: Most history entries kept on a job (oldest dropped first).
MAX_HISTORY = 200
#: What a job's output may become: a new version of one of the workspace's models or datasets.
OUTPUT_KINDS = ("model", "dataset")
MAX_OUTPUT_PATH = 500


class JobStatus(str, Enum):
    PENDING = "pending"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def holds_resources(self) -> bool:
        return self in (JobStatus.STARTING, JobStatus.RUNNING)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}

_ALLOWED: dict[JobStatus, set[JobStatus]] = {
    JobStatus.PENDING: {JobStatus.QUEUED, JobStatus.STARTING, JobStatus.CANCELLED, JobStatus.FAILED},
    JobStatus.QUEUED: {JobStatus.STARTING, JobStatus.CANCELLED, JobStatus.FAILED},
    JobStatus.STARTING: {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT},
    JobStatus.RUNNING: {JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT},
    JobStatus.SUCCEEDED: set(),
    JobStatus.FAILED: set(),
    JobStatus.CANCELLED: set(),
    JobStatus.TIMED_OUT: set(),
}

#: Node states as the server keeps them (from the agents' reports).
NODE_STATES = ("pending", "starting", "running", "exited", "lost")


@dataclass
class JobNode:
    """One node of one attempt: its host, GPUs, what its agent last reported."""

    rank: int
    host_id: str
    gpu_uuids: list[str] = field(default_factory=list)
    gpu_indices: list[int] = field(default_factory=list)
    state: str = "starting"
    exit_code: int | None = None
    message: str = ""
    # Where the other nodes reach it: the host's private address (the container's
    # network address when all nodes share one Docker host; see the runtime).
    address: str = ""

    def node_id(self, job_id: str, attempt: int) -> str:
        return node_id(job_id, attempt, self.rank)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "host_id": self.host_id, "gpu_uuids": list(self.gpu_uuids), "gpu_indices": list(self.gpu_indices),
            "state": self.state, "exit_code": self.exit_code, "message": self.message, "address": self.address,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "JobNode":
        return cls(
            rank=int(d["rank"]), host_id=d["host_id"], gpu_uuids=list(d.get("gpu_uuids") or []),
            gpu_indices=list(d.get("gpu_indices") or []), state=d.get("state", "starting"), exit_code=d.get("exit_code"),
            message=d.get("message", ""), address=d.get("address", ""),
        )


@dataclass
class JobOutput:
    """A directory of node 0's container that becomes a new version of a model (or
    dataset) of the job's workspace once the job has succeeded, with the job as its source.

    ``state``: ``waiting`` (the job runs) → ``collecting`` (succeeded: node 0's agent
    copies the directory out of the exited container and uploads it) → ``done``
    (``version`` is the new version's number) or ``failed`` (``message`` says why);
    ``skipped`` when the job did not succeed: no version."""

    kind: str
    repository_id: str
    name: str
    path: str
    state: str = "waiting"
    version: int | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "repository_id": self.repository_id, "name": self.name, "path": self.path,
                "state": self.state, "version": self.version, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict | None) -> "JobOutput | None":
        if not d:
            return None
        return cls(kind=d["kind"], repository_id=d["repository_id"], name=d["name"], path=d["path"],
                   state=d.get("state", "waiting"), version=d.get("version"), message=d.get("message", ""))


def check_output_path(path: str) -> str:
    """An absolute directory inside the container (not ``/``, no ``..``); returned normalized."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_OUTPUT_PATH or "\x00" in path:
        raise InvalidInput(f"output.path must be an absolute path of at most {MAX_OUTPUT_PATH} characters",
                           details={"field": "output.path"})
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidInput("output.path must be a directory below / without '..'", details={"field": "output.path"})
    return "/" + "/".join(parts)


def node_id(job_id: str, attempt: int, rank: int) -> str:
    """The runtime's name for one node of one attempt (a new attempt = new containers)."""
    return f"{job_id}.a{attempt}.n{rank}"


def parse_node_id(value: str) -> tuple[str, int, int] | None:
    try:
        job_id, a, n = value.rsplit(".", 2)
        if not (a.startswith("a") and n.startswith("n")):
            return None
        return job_id, int(a[1:]), int(n[1:])
    except ValueError:
        return None


@dataclass
class TrainingJob:
    id: str
    workspace_id: str
    owner_id: str
    name: str
    image: str
    command: list[str]
    created_at: datetime
    env: dict[str, str] = field(default_factory=dict)
    gpus_per_node: int = 0
    gpu_model: str | None = None
    nodes: int = 1
    cpu_cores: int = 2
    memory_gib: int = 8
    time_limit_minutes: int | None = None
    max_retries: int = 0
    priority: int = 0
    status: JobStatus = JobStatus.PENDING
    status_message: str = "created"
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None  # of the current attempt (running)
    finished_at: datetime | None = None
    attempt: int = 0  # 0-based; a gang restart increments it
    node_states: list[JobNode] = field(default_factory=list)
    exit_code: int | None = None
    # Every finished attempt's nodes: [{"attempt", "rank", "host_id", "exit_code", "state", "message"}].
    exit_codes: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # [{"at", "from", "to", "reason"}]
    # Dataset/model versions mounted read-only in every node (the storage context's stored
    # form: {"kind", "repository_id", "name", "ref"}; resolved again at every attempt).
    data_mounts: list[dict] = field(default_factory=list)
    # The directory that becomes a model/dataset version on success (None: none declared).
    output: JobOutput | None = None

    # --- lifecycle ------------------------------------------------------------------
    def transition(self, to: JobStatus, reason: str, now: datetime) -> None:
        if to == self.status:
            self.status_message = reason or self.status_message
            return
        if to not in _ALLOWED[self.status]:
            raise Conflict(
                f"a training job cannot go from {self.status.value} to {to.value}", code="invalid_transition",
                details={"from": self.status.value, "to": to.value},
            )
        self.history.append({"at": now.isoformat(), "from": self.status.value, "to": to.value, "reason": reason})
        del self.history[:-MAX_HISTORY]
        self.status = to
        self.status_message = reason
        self.updated_at = now
        if to is JobStatus.QUEUED:
            self.queued_at = self.queued_at or now
            self.started_at = None
        if to is JobStatus.RUNNING:
            self.started_at = now
        if to.terminal:
            self.finished_at = now
            if self.output is not None and self.output.state == "waiting":
                if to is JobStatus.SUCCEEDED:
                    self.output.state, self.output.message = "collecting", f"copying {self.output.path} from node 0"
                else:
                    self.output.state, self.output.message = "skipped", f"the job {to.value.replace('_', ' ')}: no version made"

    # --- output -----------------------------------------------------------------------
    def output_node(self) -> str | None:
        """The node whose container the output is copied from while it is being collected."""
        if self.output is None or self.output.state != "collecting":
            return None
        return node_id(self.id, self.attempt, 0)

    def output_stored(self, version: int) -> None:
        if self.output is not None:
            self.output.state, self.output.version = "done", version
            self.output.message = f"{self.output.kind} {self.output.name} version {version}"

    def output_failed(self, message: str) -> None:
        if self.output is not None and self.output.state in ("waiting", "collecting"):
            self.output.state, self.output.message = "failed", message[:1000]

    def place(self, nodes: list[JobNode], reason: str, now: datetime) -> None:
        """Every node's host and GPUs at once (the gang); the agents start them next."""
        if len(nodes) != self.nodes:
            raise Conflict("a gang is placed whole or not at all", code="partial_gang")
        self.node_states = nodes
        self.transition(JobStatus.STARTING, reason, now)

    def end_attempt(self) -> None:
        """Record each node's outcome and where it ran (``exit_codes``), then drop the
        placements: the GPUs are free as this is saved."""
        for n in self.node_states:
            self.exit_codes.append({"attempt": self.attempt, "rank": n.rank, "host_id": n.host_id,
                                    "exit_code": n.exit_code, "state": n.state, "message": n.message})
        self.node_states = []

    def check_can_cancel(self) -> None:
        if self.status.terminal:
            raise Conflict(f"the job has already ended ({self.status.value})", code="invalid_state")

    @property
    def world_size(self) -> int:
        return self.nodes * max(self.gpus_per_node, 1)

    def deadline_passed(self, now: datetime) -> bool:
        if self.time_limit_minutes is None or self.started_at is None or self.status is not JobStatus.RUNNING:
            return False
        return (now - self.started_at).total_seconds() >= self.time_limit_minutes * 60


def validate_job(
    *, name: str, command: list[str], env: dict[str, str], gpus_per_node: int, nodes: int, cpu_cores: int, memory_gib: int,
    time_limit_minutes: int | None, max_retries: int, priority: int,
) -> None:
    """InvalidInput (422) naming the field; variables follow the environments' rules."""
    check_environment_name(name)
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidInput("command must be a non-empty list of strings", details={"field": "command"})
    if len(command) > MAX_COMMAND_ARGS or sum(len(a) for a in command) > MAX_COMMAND_CHARS or any("\x00" in a for a in command):
        raise InvalidInput(f"command: at most {MAX_COMMAND_ARGS} arguments, {MAX_COMMAND_CHARS} characters, no NUL",
                           details={"field": "command"})
    check_variables(env, {})
    if not 0 <= gpus_per_node <= MAX_GPUS_PER_REQUEST:
        raise InvalidInput(f"gpus_per_node must be between 0 and {MAX_GPUS_PER_REQUEST}", details={"field": "gpus_per_node"})
    if not 1 <= nodes <= MAX_NODES:
        raise InvalidInput(f"nodes must be between 1 and {MAX_NODES}", details={"field": "nodes"})
    if cpu_cores < 1 or memory_gib < 1:
        raise InvalidInput("cpu_cores and memory_gib must be at least 1", details={"field": "cpu_cores"})
    if time_limit_minutes is not None and not 1 <= time_limit_minutes <= MAX_TIME_LIMIT_MINUTES:
        raise InvalidInput(f"time_limit_minutes must be between 1 and {MAX_TIME_LIMIT_MINUTES}", details={"field": "time_limit_minutes"})
    if not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidInput(f"max_retries must be between 0 and {MAX_RETRIES}", details={"field": "max_retries"})
    if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise InvalidInput(f"priority must be between {PRIORITY_RANGE[0]} and {PRIORITY_RANGE[1]}", details={"field": "priority"})


def rendezvous_env(job: TrainingJob, rank: int, master_address: str) -> dict[str, str]:
    """torchrun-compatible variables for node ``rank`` (``MASTER_ADDR`` = rank 0's address)."""
    per_node = max(job.gpus_per_node, 1)
    return {
        "MASTER_ADDR": master_address,
        "MASTER_PORT": str(MASTER_PORT),
        "NODE_RANK": str(rank),
        "NNODES": str(job.nodes),
        "NPROC_PER_NODE": str(per_node),
        "GPUS_PER_NODE": str(job.gpus_per_node),
        "WORLD_SIZE": str(job.nodes * per_node),
        "REMOTEGPU_JOB_ID": job.id,
        "REMOTEGPU_JOB_ATTEMPT": str(job.attempt),
        "REMOTEGPU_HOSTFILE": HOSTFILE_PATH,
    }


def hostfile(job: TrainingJob, addresses: list[str]) -> str:
    """MPI hostfile: one ``address slots=N`` line per node, rank order."""
    per_node = max(job.gpus_per_node, 1)
    return "".join(f"{a} slots={per_node}\n" for a in addresses)
