from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from remotegpu.entrypoints.http.schemas.common import Strict

ScopeName = Literal["environment", "workspace", "host", "fleet", "job", "service"]


class AgentMetricsIn(BaseModel):
    """A batch of samples from an agent: rows ``[ts, metric, value, env_id, gpu_uuid]``
    (checked by the metrics service, not here: a batch can hold tens of thousands)."""

    model_config = ConfigDict(extra="forbid")
    samples: list = Field(default_factory=list, max_length=100_000)


class AgentMetricsOut(BaseModel):
    accepted: int = Field(description="rows stored (rows about other hosts' environments are dropped)")


class MetricsScopeQuery(Strict):
    scope: ScopeName = "environment"
    id: str | None = Field(None, max_length=36, description="the environment, workspace, host, training job or inference "
                           "service id (not for fleet); a job's or service's series are its nodes' or replicas' GPUs")


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
    environment_id: str = Field(description='"" when the GPU or host is not held by an environment; '
                                "a training job's or inference service's id for the GPUs it holds")
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


RuleTypeName = Literal["threshold", "host_offline", "gpu_xid", "gpu_overheat", "env_idle", "quota_near_limit", "balance_low"]


class AlertRuleIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    type: RuleTypeName = "threshold"
    workspace_id: str | None = Field(None, max_length=36, description="a workspace rule (members); omit: a platform rule (admins)")
    metric: str | None = Field(None, max_length=64, description="threshold rules: the metric (see /api/v1/metrics/catalog); "
                               "balance_low: runway_hours (default) or balance (minor units)")
    op: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = Field(None, description="default per type: gpu_overheat 85, env_idle 5, quota_near_limit 90, "
                                    "balance_low 24 (hours of runway) or 0 (balance)")
    for_seconds: int = Field(60, ge=0, le=7 * 86400, description="how long it must breach before firing")
    keep_firing_for_seconds: int = Field(0, ge=0, le=7 * 86400, description="keeps firing this long after the last breach")
    env_id: str = Field("", max_length=36, description="only this environment's series")
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True


class AlertRulePatchIn(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    metric: str | None = Field(None, max_length=64)
    op: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = None
    for_seconds: int | None = Field(None, ge=0, le=7 * 86400)
    keep_firing_for_seconds: int | None = Field(None, ge=0, le=7 * 86400)
    env_id: str | None = Field(None, max_length=36)
    severity: Literal["info", "warning", "critical"] | None = None
    enabled: bool | None = None


class AlertRuleOut(BaseModel):
    id: str
    name: str
    type: str
    scope: str
    workspace_id: str | None
    metric: str
    op: str
    threshold: float
    for_seconds: int
    keep_firing_for_seconds: int
    env_id: str
    severity: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WorkspaceScopeQuery(Strict):
    workspace_id: str | None = Field(None, max_length=36, description="omit: the platform's (admins)")


class AlertListQuery(WorkspaceScopeQuery):
    status: Literal["pending", "firing", "resolved"] | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=2_000_000_000)


class AlertOut(BaseModel):
    id: str
    rule_id: str
    rule_name: str
    workspace_id: str | None
    labels: dict[str, str]
    status: str
    value: float | None
    pending_since: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    silenced: bool


class SilenceIn(Strict):
    workspace_id: str | None = Field(None, max_length=36, description="omit: a platform silence (admins)")
    rule_id: str = Field("", max_length=36, description='"" = every rule in scope')
    matchers: dict[str, str] = Field(default_factory=dict, max_length=20,
                                     description="label → value the alert must carry (host, environment, workspace, gpu_uuid)")
    starts_at: datetime | None = None
    ends_at: datetime
    comment: str = Field("", max_length=500)


class SilenceOut(BaseModel):
    id: str
    scope: str
    workspace_id: str | None
    rule_id: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_at: datetime
