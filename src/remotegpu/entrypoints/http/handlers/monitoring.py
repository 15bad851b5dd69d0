"""Metrics: agents' sample batches in, latest values and history out (authorized like the objects)."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.domain.monitoring.metrics import METRICS
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.handlers.agent import _agent_token
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.monitoring import (
    AgentMetricsIn,
    AgentMetricsOut,
    HistoryOut,
    HistoryQuery,
    LatestOut,
    LatestQuery,
    MetricInfoOut,
    PointOut,
    SampleOut,
    SeriesOut,
)

TAGS = ["metrics"]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


@api.post("/api/v1/agent/metrics", body=AgentMetricsIn, response=AgentMetricsOut, auth=False, tags=["agent"], errors=[401, 422])
async def agent_metrics(call: Call) -> AgentMetricsOut:
    """A batch of metric samples from a host's agent (Bearer: agent token), sent after its heartbeats."""
    accepted = await call.container.metrics_service().ingest_from_agent(_agent_token(call), call.body.samples)
    return AgentMetricsOut(accepted=accepted)


@api.get("/api/v1/metrics/catalog", response=Page[MetricInfoOut], tags=TAGS, errors=[401])
async def metric_catalog(call: Call) -> Page[MetricInfoOut]:
    """The metric names (DCGM fields for GPUs), their units and what they tag."""
    items = [MetricInfoOut(name=i.name, unit=i.unit, kind=i.kind, help=i.help) for i in METRICS.values()]
    return Page[MetricInfoOut](items=items, total=len(items))


@api.get("/api/v1/metrics", query=LatestQuery, response=LatestOut, tags=TAGS, errors=[401, 403, 404, 422])
async def latest_metrics(call: Call) -> LatestOut:
    """Latest value of each series in a scope (environment/workspace: who may see it; host/fleet: admins)."""
    q: LatestQuery = call.query
    names = [n.strip() for n in q.metric.split(",") if n.strip()] if q.metric else None
    samples = await call.container.metrics_service().latest(call.user, q.scope, q.id, names)
    return LatestOut(items=[
        SampleOut(metric=s.metric, value=s.value, at=_at(s.ts), host_id=s.host_id, environment_id=s.env_id,
                  workspace_id=s.workspace_id, gpu_uuid=s.gpu_uuid)
        for s in samples
    ])


@api.get("/api/v1/metrics/history", query=HistoryQuery, response=HistoryOut, tags=TAGS, errors=[401, 403, 404, 422])
async def metric_history(call: Call) -> HistoryOut:
    """One metric's history in a scope: avg/min/max per ``step`` seconds over [from, to)."""
    q: HistoryQuery = call.query
    series, start, end, step = await call.container.metrics_service().history(call.user, q.scope, q.id, q.metric, q.from_,
                                                                              q.to, q.step)
    return HistoryOut(metric=q.metric, start=_at(start), end=_at(end), step=step, series=[
        SeriesOut(metric=s.metric, host_id=s.host_id, environment_id=s.env_id, workspace_id=s.workspace_id,
                  gpu_uuid=s.gpu_uuid, points=[PointOut(t=_at(p.t), avg=p.avg, min=p.min, max=p.max, count=p.count)
                                               for p in s.points])
        for s in series
    ])
