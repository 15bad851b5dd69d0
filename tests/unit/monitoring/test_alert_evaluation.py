"""Built-in rule types over the in-memory stores: env_idle only for GPUs environments
hold, gpu_xid, gpu_overheat's default threshold, workspace scope, webhooks published."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.monitoring.memory_alerts import InMemoryAlertStore
from remotegpu.adapters.monitoring.memory_store import InMemoryMetricsStore
from remotegpu.application.monitoring.alerts import AlertService
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.monitoring import metrics as m
from remotegpu.domain.monitoring.alerts import AlertRule, RuleType, Scope
from remotegpu.domain.webhooks import events

NOW = 1_800_000_000.0


def world():
    store = InMemoryStore()
    metrics, alerts = InMemoryMetricsStore(), InMemoryAlertStore()
    published = []

    async def publish(ws, event_type, data):
        published.append((ws, event_type, data))

    clock = {"now": NOW}
    service = AlertService(uow=lambda: InMemoryUnitOfWork(store), store=alerts, metrics=metrics,
                           clock=FrozenClock(datetime.fromtimestamp(NOW, tz=timezone.utc)), publish=publish,
                           wall=lambda: clock["now"])
    return service, metrics, alerts, published, clock


def rule(type_: RuleType, **kw) -> AlertRule:
    return AlertRule.create(name=type_.value, type=type_, scope=Scope.WORKSPACE, workspace_id="w1", created_by="u",
                            now=datetime.fromtimestamp(NOW, tz=timezone.utc), for_seconds=0, **kw)


async def test_env_idle_watches_held_gpus_of_its_workspace_only():
    service, metrics, alerts, published, clock = world()
    await alerts.add_rule(rule(RuleType.ENV_IDLE))
    await metrics.write([
        m.Sample(NOW, m.GPU_UTIL, 2, "h1", "e1", "w1", "GPU-1"),  # held, idle: fires
        m.Sample(NOW, m.GPU_UTIL, 2, "h1", "", "", "GPU-2"),  # nobody's: not an idle environment
        m.Sample(NOW, m.GPU_UTIL, 2, "h1", "e9", "w9", "GPU-3"),  # another workspace's
        m.Sample(NOW, m.GPU_UTIL, 60, "h1", "e2", "w1", "GPU-4"),  # busy
    ])
    fired = await service.evaluate()
    assert len(fired) == 1
    [record] = await alerts.open_alerts(fired[0][0])
    assert record.labels == {"host": "h1", "environment": "e1", "workspace": "w1", "gpu_uuid": "GPU-1"}
    assert [(ws, t) for ws, t, _ in published] == [("w1", "alert.firing")]
    assert {"alert.firing", "alert.resolved"} <= set(events.known())

    clock["now"] += 10
    await metrics.write([m.Sample(clock["now"], m.GPU_UTIL, 50, "h1", "e1", "w1", "GPU-1")])
    assert [t[2] for t in await service.evaluate()] == ["resolved"]
    assert published[-1][1] == "alert.resolved"


async def test_xid_and_overheat_defaults():
    service, metrics, alerts, _, clock = world()
    xid, hot = rule(RuleType.GPU_XID), rule(RuleType.GPU_OVERHEAT)
    assert (hot.metric, hot.op, hot.threshold) == (m.GPU_TEMP, ">", 85.0)
    await alerts.add_rule(xid)
    await alerts.add_rule(hot)
    await metrics.write([m.Sample(NOW, m.XID_ERRORS, 79, "h1", "e1", "w1", "GPU-1"),
                         m.Sample(NOW, m.GPU_TEMP, 84, "h1", "e1", "w1", "GPU-1")])
    assert [(r, t) for r, _, t in await service.evaluate()] == [(xid.id, "firing")]
    clock["now"] += 10
    await metrics.write([m.Sample(clock["now"], m.XID_ERRORS, 0, "h1", "e1", "w1", "GPU-1"),
                         m.Sample(clock["now"], m.GPU_TEMP, 91, "h1", "e1", "w1", "GPU-1")])
    assert sorted((r, t) for r, _, t in await service.evaluate()) == sorted([(xid.id, "resolved"), (hot.id, "firing")])


async def test_stale_series_stop_breaching():
    service, metrics, alerts, _, clock = world()
    await alerts.add_rule(rule(RuleType.GPU_OVERHEAT))
    await metrics.write([m.Sample(NOW, m.GPU_TEMP, 95, "h1", "e1", "w1", "GPU-1")])
    assert [t for _, _, t in await service.evaluate()] == ["firing"]
    clock["now"] += 600  # the agent went quiet: no data is no breach
    assert [t for _, _, t in await service.evaluate()] == ["resolved"]
