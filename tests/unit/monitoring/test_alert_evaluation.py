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


async def test_balance_low_watches_runway_with_hysteresis_and_tells_the_wallet_owners():
    service, metrics, alerts, _, clock = world()
    wallets = {"w1": (4_000, 200)}  # 20 h of runway at 200 per hour

    async def balances(ids):
        return {ws: v for ws, v in wallets.items() if ids is None or ws in ids}

    sent = []

    async def notify(messages):
        sent.extend(messages)

    service.balances, service.notify = balances, notify
    low = rule(RuleType.BALANCE_LOW)
    assert (low.metric, low.op, low.threshold, low.keep_firing_for_seconds) == ("runway_hours", "<", 24.0, 3600)
    await alerts.add_rule(low)
    assert [t for _, _, t in await service.evaluate()] == ["firing"]
    [record] = await alerts.open_alerts(low.id)
    assert (record.labels, record.state.value) == ({"workspace": "w1"}, 20.0)
    [message] = sent
    from remotegpu.domain.workspaces.models import Role
    assert (message.audience.workspace_id, set(message.audience.roles), message.link) == ("w1", {Role.OWNER, Role.ADMIN}, "/billing")

    wallets["w1"] = (5_000, 200)  # topped up to 25 h: back over, but within keep_firing_for: still firing, nobody told
    clock["now"] += 600
    assert await service.evaluate() == []
    wallets["w1"] = (4_600, 200)  # flapping under again: the same alert, no second notice
    clock["now"] += 600
    assert await service.evaluate() == []
    wallets["w1"] = (50_000, 0)  # nothing runs: runway is not low at any balance
    clock["now"] += 600
    assert await service.evaluate() == []
    clock["now"] += 3600
    assert [t for _, _, t in await service.evaluate()] == ["resolved"]
    assert [m.kind for m in sent] == ["alert.firing", "alert.resolved"]

    wallets["w1"] = (0, 0)  # empty: no runway whatever it burns
    clock["now"] += 10
    assert [t for _, _, t in await service.evaluate()] == ["firing"]


async def test_balance_low_on_the_balance_and_for_every_wallet_of_a_platform_rule():
    service, _, alerts, _, _ = world()

    async def balances(ids):
        assert ids is None  # a platform rule: every wallet
        return {"w1": (900, 10), "w2": (2_000, 10)}

    service.balances = balances
    rule_ = AlertRule.create(name="low", type=RuleType.BALANCE_LOW, scope=Scope.PLATFORM, workspace_id=None, created_by="u",
                             now=datetime.fromtimestamp(NOW, tz=timezone.utc), for_seconds=0, metric="balance",
                             threshold=1_000)
    await alerts.add_rule(rule_)
    await service.evaluate()
    assert [a.labels for a in await alerts.open_alerts(rule_.id)] == [{"workspace": "w1"}]
    import pytest

    from remotegpu.domain.shared.errors import InvalidInput
    with pytest.raises(InvalidInput):
        rule(RuleType.BALANCE_LOW, metric=m.GPU_UTIL)


async def test_a_silenced_alert_still_fires_and_resolves_but_nobody_is_told():
    from datetime import timedelta

    from remotegpu.domain.monitoring.alerts import Silence

    service, metrics, alerts, published, clock = world()
    sent = []

    async def notify(messages):
        sent.extend(messages)

    service.notify = notify
    hot = rule(RuleType.GPU_OVERHEAT)
    await alerts.add_rule(hot)
    at = datetime.fromtimestamp(NOW, tz=timezone.utc)
    # a silence of this rule for GPU-1 only, for the next 10 minutes
    await alerts.add_silence(Silence("s1", Scope.WORKSPACE, "w1", at - timedelta(seconds=1), at + timedelta(minutes=10), "u",
                                     at, hot.id, {"gpu_uuid": "GPU-1"}))
    await metrics.write([m.Sample(NOW, m.GPU_TEMP, 95, "h1", "e1", "w1", "GPU-1"),
                         m.Sample(NOW, m.GPU_TEMP, 95, "h1", "e1", "w1", "GPU-2")])
    assert sorted(t for _, _, t in await service.evaluate()) == ["firing", "firing"]  # both fire: state is never muted
    records = {r.labels["gpu_uuid"]: r for r in await alerts.open_alerts(hot.id)}
    assert (records["GPU-1"].silenced, records["GPU-2"].silenced) == (True, False)
    assert [m_.params["what"].count("GPU-2") for m_ in sent] == [1] and len(published) == 1  # GPU-2 only was told
    clock["now"] += 10
    await metrics.write([m.Sample(clock["now"], m.GPU_TEMP, 60, "h1", "e1", "w1", "GPU-1"),
                         m.Sample(clock["now"], m.GPU_TEMP, 60, "h1", "e1", "w1", "GPU-2")])
    assert sorted(t for _, _, t in await service.evaluate()) == ["resolved", "resolved"]
    assert len(sent) == 2 and all("GPU-2" in m_.params["what"] for m_ in sent)
    # another workspace's silence mutes nothing here
    other = Silence("s2", Scope.WORKSPACE, "w9", at, at + timedelta(minutes=10), "u", at)
    assert not other.mutes(hot, {"workspace": "w1", "gpu_uuid": "GPU-1"}, at)
    assert not Silence("s3", Scope.WORKSPACE, "w1", at + timedelta(minutes=1), at + timedelta(minutes=10), "u", at).mutes(
        hot, {"workspace": "w1"}, at)  # not started yet
