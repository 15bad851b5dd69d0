"""Metrics: agents' sample batches in, latest values and history out (authorized like the objects)."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.domain.monitoring import alerts as _alert_events  # noqa: F401 - registers the alert webhook event types
from remotegpu.domain.monitoring.metrics import METRICS
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.handlers.agent import _agent_token
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.monitoring import (
    AlertListQuery,
    AlertOut,
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatchIn,
    SilenceIn,
    SilenceOut,
    WorkspaceScopeQuery,
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


@api.post("/api/v1/agent/metrics", body=AgentMetricsIn, response=AgentMetricsOut, auth=False, tags=["agent"], errors=[401, 422],
          bulk=True)
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
    """Latest value of each series in a scope (environment/workspace/job/service: who may see it; host/fleet: admins)."""
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


# --- alert rules, alerts, silences --------------------------------------------------------

ALERT_TAGS = ["alerts"]


def _rule_out(r) -> AlertRuleOut:
    return AlertRuleOut(id=r.id, name=r.name, type=r.type.value, scope=r.scope.value, workspace_id=r.workspace_id,
                        metric=r.metric, op=r.op, threshold=r.threshold, for_seconds=r.for_seconds,
                        keep_firing_for_seconds=r.keep_firing_for_seconds, env_id=r.env_id, severity=r.severity,
                        enabled=r.enabled, created_at=r.created_at, updated_at=r.updated_at)


def _silence_out(s) -> SilenceOut:
    return SilenceOut(id=s.id, scope=s.scope.value, workspace_id=s.workspace_id, rule_id=s.rule_id, matchers=s.matchers,
                      starts_at=s.starts_at, ends_at=s.ends_at, comment=s.comment, created_at=s.created_at)


@api.post("/api/v1/alert-rules", body=AlertRuleIn, response=AlertRuleOut, status=201, tags=ALERT_TAGS,
          errors=[401, 403, 404, 422])
async def create_alert_rule(call: Call) -> AlertRuleOut:
    """Create an alert rule: a workspace's (members) or the platform's (admins)."""
    b: AlertRuleIn = call.body
    fields = b.model_dump(exclude={"type", "workspace_id"})
    if b.type != "threshold":  # fixed by the type (balance_low: its metric picks runway hours or balance)
        fields = {k: v for k, v in fields.items() if k not in (("op",) if b.type == "balance_low" else ("metric", "op"))}
    rule = await call.container.alert_service().create_rule(
        call.user, scope="workspace" if b.workspace_id else "platform", workspace_id=b.workspace_id, type=b.type, **fields)
    return _rule_out(rule)


@api.get("/api/v1/alert-rules", query=WorkspaceScopeQuery, response=Page[AlertRuleOut], tags=ALERT_TAGS, errors=[401, 403, 404])
async def list_alert_rules(call: Call) -> Page[AlertRuleOut]:
    """A workspace's alert rules (members), or the platform's (admins)."""
    rules = await call.container.alert_service().list_rules(call.user, call.query.workspace_id)
    return Page[AlertRuleOut](items=[_rule_out(r) for r in rules], total=len(rules))


@api.get("/api/v1/alert-rules/{rule_id}", response=AlertRuleOut, tags=ALERT_TAGS, errors=[401, 403, 404])
async def get_alert_rule(call: Call) -> AlertRuleOut:
    """One alert rule."""
    return _rule_out(await call.container.alert_service().get_rule(call.user, call.path("rule_id")))


@api.patch("/api/v1/alert-rules/{rule_id}", body=AlertRulePatchIn, response=AlertRuleOut, tags=ALERT_TAGS,
           errors=[401, 403, 404, 422])
async def update_alert_rule(call: Call) -> AlertRuleOut:
    """Change an alert rule (members of its workspace; admins for platform rules)."""
    changes = call.body.model_dump(exclude_none=True)
    return _rule_out(await call.container.alert_service().update_rule(call.user, call.path("rule_id"), changes))


@api.delete("/api/v1/alert-rules/{rule_id}", status=204, tags=ALERT_TAGS, errors=[401, 403, 404])
async def delete_alert_rule(call: Call) -> None:
    """Delete an alert rule and its alerts."""
    await call.container.alert_service().delete_rule(call.user, call.path("rule_id"))


@api.get("/api/v1/alerts", query=AlertListQuery, response=Page[AlertOut], tags=ALERT_TAGS, errors=[401, 403, 404])
async def list_alerts(call: Call) -> Page[AlertOut]:
    """Alerts (pending, firing, resolved: the history), newest first."""
    q: AlertListQuery = call.query
    records, total = await call.container.alert_service().list_alerts(call.user, q.workspace_id, q.status, q.limit, q.offset)
    return Page[AlertOut](items=[
        AlertOut(id=a.id, rule_id=a.rule_id, rule_name=a.rule_name, workspace_id=a.workspace_id, labels=a.labels,
                 status=a.state.status.value, value=a.state.value, pending_since=_at(a.state.pending_since),
                 fired_at=_at(a.state.fired_at) if a.state.fired_at is not None else None,
                 resolved_at=_at(a.state.resolved_at) if a.state.resolved_at is not None else None, silenced=a.silenced)
        for a in records
    ], total=total)


@api.post("/api/v1/alert-silences", body=SilenceIn, response=SilenceOut, status=201, tags=ALERT_TAGS,
          errors=[401, 403, 404, 422])
async def create_silence(call: Call) -> SilenceOut:
    """Mute notifications of a rule (or every rule in scope) for alerts matching labels, for a period."""
    b: SilenceIn = call.body
    s = await call.container.alert_service().create_silence(
        call.user, workspace_id=b.workspace_id, ends_at=b.ends_at, starts_at=b.starts_at, rule_id=b.rule_id,
        matchers=b.matchers, comment=b.comment)
    return _silence_out(s)


@api.get("/api/v1/alert-silences", query=WorkspaceScopeQuery, response=Page[SilenceOut], tags=ALERT_TAGS,
         errors=[401, 403, 404])
async def list_silences(call: Call) -> Page[SilenceOut]:
    """A workspace's silences (members), or the platform's (admins)."""
    items = await call.container.alert_service().list_silences(call.user, call.query.workspace_id)
    return Page[SilenceOut](items=[_silence_out(s) for s in items], total=len(items))


@api.delete("/api/v1/alert-silences/{silence_id}", status=204, tags=ALERT_TAGS, errors=[401, 403, 404])
async def delete_silence(call: Call) -> None:
    """End a silence."""
    await call.container.alert_service().delete_silence(call.user, call.path("silence_id"))
