"""Training jobs on the wire (``/api/v1/training-jobs``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from remotegpu.domain.environments.variables import MAX_VALUE_LENGTH, MAX_VARIABLES, NAME_RULE
from remotegpu.domain.workloads.models import (
    MAX_COMMAND_ARGS,
    MAX_NODES,
    MAX_OUTPUT_PATH,
    MAX_RETRIES,
    MAX_TIME_LIMIT_MINUTES,
    PRIORITY_RANGE,
    JobStatus,
)
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict
from remotegpu.entrypoints.http.schemas.environments import DataMountIn, DataMountOut

_Arg = Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
_Variables = dict[Annotated[str, StringConstraints(max_length=128)], Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]]


class JobOutputIn(Strict):
    kind: Literal["model", "dataset"] = Field("model", description="what the output becomes a version of")
    name: str = Field(min_length=1, max_length=64, description="a model (or dataset) of the job's workspace, by name or id")
    path: str = Field("/output", min_length=1, max_length=MAX_OUTPUT_PATH,
                      description="the directory in node 0's container; the command writes there")


class JobOutputOut(BaseModel):
    kind: str
    repository_id: str
    name: str
    path: str
    state: Literal["waiting", "collecting", "done", "failed", "skipped"] = Field(
        description="waiting (the job runs) → collecting (succeeded: being uploaded) → done (version) | failed; "
        "skipped: the job did not succeed, no version")
    version: int | None = Field(None, description="the version the output became (state done)")
    message: str = ""


class TrainingJobIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64, description=NAME_RULE)
    command: list[_Arg] = Field(min_length=1, max_length=MAX_COMMAND_ARGS, description="argv run in every node (no shell)")
    image: str | None = Field(None, min_length=1, max_length=255, description="default: the platform's base image; REMOTEGPU_ALLOWED_IMAGES")
    env: _Variables = Field(default_factory=dict, max_length=MAX_VARIABLES,
                            description="environment variables, same rules as environments' (reserved names answer 422)")
    gpus_per_node: int = Field(0, ge=0, le=8)
    gpu_model: str | None = Field(None, min_length=1, max_length=128)
    nodes: int = Field(1, ge=1, le=MAX_NODES, description="nodes placed all at once (gang), one per host")
    cpu_cores: int = Field(2, ge=1, le=256, description="per node")
    memory_gib: int = Field(8, ge=1, le=4096, description="per node")
    time_limit_minutes: int | None = Field(None, ge=1, le=MAX_TIME_LIMIT_MINUTES)
    max_retries: int = Field(0, ge=0, le=MAX_RETRIES, description="a failed node restarts the whole gang this many times")
    priority: int = Field(0, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1], description="higher first; waiting raises it (aging)")
    mounts: list[DataMountIn] = Field(
        default_factory=list, max_length=20,
        description="dataset/model versions mounted read-only at /datasets/<name> or /models/<name> in every node; "
        "the version ('latest', a tag or a number) is resolved at every attempt",
    )
    output: JobOutputIn | None = Field(
        None, description="node 0's directory that becomes the next version of a model (or dataset) of the workspace "
        "when the job succeeds, its source the job (another workspace's: 404)")


class TrainingJobListQuery(PageQuery):
    workspace_id: str = Field(min_length=1, max_length=64)


class JobNodeOut(BaseModel):
    rank: int
    host_id: str
    gpu_uuids: list[str]
    state: str
    exit_code: int | None
    message: str


class NodeExitOut(BaseModel):
    attempt: int
    rank: int
    host_id: str | None = None
    exit_code: int | None = None
    state: str | None = None
    message: str | None = None


class JobEventOut(BaseModel):
    at: str
    from_status: str = Field(alias="from")
    to: str
    reason: str


class TrainingJobOut(BaseModel):
    id: str
    workspace_id: str
    owner_id: str
    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    gpus_per_node: int
    gpu_model: str | None
    nodes: int
    cpu_cores: int
    memory_gib: int
    time_limit_minutes: int | None
    max_retries: int
    priority: int
    status: JobStatus
    status_message: str
    attempt: int
    exit_code: int | None
    node_states: list[JobNodeOut]
    exit_codes: list[NodeExitOut]
    history: list[dict]
    mounts: list[DataMountOut] = Field(default_factory=list, description="dataset/model versions mounted read-only")
    output: JobOutputOut | None = Field(None, description="the declared output and what became of it")
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class JobOutputErrorIn(Strict):
    error: str = Field(min_length=1, max_length=1000, description="why the agent has no archive to send")


class JobOutputReceivedOut(BaseModel):
    job_id: str
    output: JobOutputOut


class JobLogOut(BaseModel):
    node: str = Field(description="a<attempt>.n<rank>")
    attempt: int
    rank: int
    bytes: int


class JobLogsOut(BaseModel):
    items: list[JobLogOut]
    total: int


class JobLogQuery(Strict):
    offset: int = Field(0, ge=0, le=2_000_000_000)
    limit: int | None = Field(None, ge=1, le=64 * 1024 * 1024)
    download: bool = False


class JobLogStreamQuery(Strict):
    offsets: str | None = Field(None, max_length=4096, description="resume: node=offset,... (default: from the start)")


# --- inference services -------------------------------------------------------------------


class InferenceServiceIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64, description=NAME_RULE)
    image: str | None = Field(None, min_length=1, max_length=255)
    command: list[_Arg] = Field(default_factory=list, max_length=MAX_COMMAND_ARGS, description="argv (empty: the image's own)")
    port: int = Field(8000, ge=1, le=65535, description="the port the replicas serve HTTP on")
    env: _Variables = Field(default_factory=dict, max_length=MAX_VARIABLES)
    health_path: str = Field("/", min_length=1, max_length=512, description="a replica gets requests once this answers < 500")
    gpus: int = Field(0, ge=0, le=8, description="per replica")
    gpu_model: str | None = Field(None, min_length=1, max_length=128)
    cpu_cores: int = Field(1, ge=1, le=256)
    memory_gib: int = Field(2, ge=1, le=4096)
    min_replicas: int = Field(0, ge=0, le=64, description="0: scale to zero when idle")
    max_replicas: int = Field(1, ge=1, le=64)
    target_concurrency: float = Field(10.0, gt=0, le=10_000, description="requests in flight per replica")
    scale_down_delay_s: float = Field(300.0, gt=0, le=86_400, description="replicas go only after this long of lower demand")
    scale_to_zero_after_s: float = Field(300.0, gt=0, le=86_400, description="idle this long: no replica (min_replicas 0)")
    public: bool = Field(False, description="anyone may call it; otherwise a token of the service is needed")
    mounts: list[DataMountIn] = Field(
        default_factory=list, max_length=20,
        description="dataset/model versions mounted read-only at /datasets/<name> or /models/<name> in every replica; "
        "the version ('latest', a tag or a number) is resolved at every replica start",
    )


class InferenceServicePatchIn(Strict):
    image: str | None = Field(None, min_length=1, max_length=255)
    command: list[_Arg] | None = Field(None, max_length=MAX_COMMAND_ARGS)
    port: int | None = Field(None, ge=1, le=65535)
    env: _Variables | None = Field(None, max_length=MAX_VARIABLES)
    health_path: str | None = Field(None, min_length=1, max_length=512)
    min_replicas: int | None = Field(None, ge=0, le=64)
    max_replicas: int | None = Field(None, ge=1, le=64)
    target_concurrency: float | None = Field(None, gt=0, le=10_000)
    scale_down_delay_s: float | None = Field(None, gt=0, le=86_400)
    scale_to_zero_after_s: float | None = Field(None, gt=0, le=86_400)
    public: bool | None = None


class InferenceServiceListQuery(PageQuery):
    workspace_id: str = Field(min_length=1, max_length=64)


class ReplicaOut(BaseModel):
    id: str
    generation: int
    host_id: str
    state: str
    ready: bool
    message: str


class ServiceStatsOut(BaseModel):
    requests: int
    errors: int
    cold_starts: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    rps_1m: float = Field(0.0, description="requests per second over the last minute")
    ready_replicas: int
    in_flight: int


class InferenceServiceOut(BaseModel):
    id: str
    workspace_id: str
    owner_id: str
    name: str
    url: str = Field(description="the service's stable URL on the apps domain")
    image: str
    command: list[str]
    port: int
    env: dict[str, str]
    health_path: str
    gpus: int
    gpu_model: str | None
    cpu_cores: int
    memory_gib: int
    min_replicas: int
    max_replicas: int
    target_concurrency: float
    scale_down_delay_s: float
    scale_to_zero_after_s: float
    public: bool
    status: str
    status_message: str
    generation: int
    desired_replicas: int
    replicas: list[ReplicaOut]
    mounts: list[DataMountOut] = Field(default_factory=list, description="dataset/model versions mounted read-only")
    stats: ServiceStatsOut
    created_at: datetime


class ServiceTokenOut(BaseModel):
    token: str = Field(description="shown once: send as 'Authorization: Bearer <token>' to the service's URL")
