from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from remotegpu.entrypoints.http.schemas.common import Strict

ScopeName = Literal["environment", "workspace", "host", "fleet"]


class AgentMetricsIn(BaseModel):
    """A batch of samples from an agent: rows ``[ts, metric, value, env_id, gpu_uuid]``
    (checked by the metrics service, not here: a batch can hold tens of thousands)."""

    model_config = ConfigDict(extra="forbid")
    samples: list = Field(default_factory=list, max_length=100_000)


class AgentMetricsOut(BaseModel):
    accepted: int = Field(description="rows stored (rows about other hosts' environments are dropped)")


class MetricsScopeQuery(Strict):
    scope: ScopeName = "environment"
    id: str | None = Field(None, max_length=36, description="the environment, workspace or host id (not for fleet)")


class LatestQuery(MetricsScopeQuery):
    metric: str | None = Field(None, max_length=2000, description="comma-separated metric names; default all")


class HistoryQuery(MetricsScopeQuery):
    metric: str = Field(max_length=64)
    from_: datetime | None = Field(None, alias="from", description="default: an hour before `to`")
    to: datetime | None = Field(None, description="default: now")
    step: int | None = Field(None, ge=1, le=31 * 86400, description="seconds per point; default about 360 points")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SampleOut(BaseModel):
    metric: str
    value: float
    at: datetime
    host_id: str
    environment_id: str = Field(description='"" when the GPU or host is not held by an environment')
    workspace_id: str
    gpu_uuid: str


class LatestOut(BaseModel):
    items: list[SampleOut]


class PointOut(BaseModel):
    t: datetime
    avg: float
    min: float
    max: float
    count: int


class SeriesOut(BaseModel):
    metric: str
    host_id: str
    environment_id: str
    workspace_id: str
    gpu_uuid: str
    points: list[PointOut]


class HistoryOut(BaseModel):
    metric: str
    start: datetime
    end: datetime
    step: int
    series: list[SeriesOut]


class MetricInfoOut(BaseModel):
    name: str
    unit: str
    kind: str
    help: str
