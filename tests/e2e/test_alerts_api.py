"""Alert rules end to end on SQLite: the fake NVML driven to 95 % fires a rule after its
`for` and resolves after, a host whose agent stops fires "host offline", members are
notified in-app once per transition even with two evaluators, other tenants see 404."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace as dc_replace

import aiohttp

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.fleet.http_link import HttpAgentLink
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.runtime.memory import InMemoryRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.application.monitoring.collector import MetricsCollector
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup


async def test_rules_fire_after_for_resolve_and_notify_once(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, embedded_agent=False, heartbeat_seconds=0.5)
    container = build_container(settings)
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    user, other = await signup(client), await signup(client)
    r = await client.post("/api/v1/hosts", json={"name": "gpu-1"}, headers=admin.headers)
    control = tmp_path / "fake-gpus.json"
    probe = FakeGpuProbe("1xNVIDIA A100-SXM4-80GB", seed="gpu-1", control_file=control)
    link = HttpAgentLink(str(client.make_url("")))
    agent = HostAgent(InMemoryRuntime(), probe, link, HostSystemInfo(tmp_path), name="gpu-1",
                      join_token=(await r.json())["join_token"], credentials=FileCredentialStore(tmp_path / "agent"),
                      collector=MetricsCollector(probe, None, interval_seconds=1))
    service = container.alert_service()
    twin = dc_replace(service)  # a second replica's evaluator on the same database

    async def sample(util: int) -> None:
        control.write_text(json.dumps({"*": {"DCGM_FI_DEV_GPU_UTIL": util}}))
        container.metrics_service().forget_tags()
        await agent.collector.collect_once()
        await agent.beat_once()

    async def evaluate() -> list:
        a, b = await asyncio.gather(service.evaluate(), twin.evaluate())
        return a + b

    async def alerts(account, **params):
        r = await client.get("/api/v1/alerts", params=params, headers=account.headers)
        assert r.status == 200, await r.text()
        return (await r.json())["items"]

    try:
        await agent.beat_once()
        r = await client.post("/api/v1/environments", json={"name": "train", "workspace_id": user.personal_workspace_id,
                                                            "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}, headers=user.headers)
        env_id = (await r.json())["id"]
        await agent.beat_once()
        ws = user.personal_workspace_id
        r = await client.post("/api/v1/alert-rules", headers=user.headers, json={
            "name": "hot GPU", "workspace_id": ws, "metric": "DCGM_FI_DEV_GPU_UTIL", "op": ">", "threshold": 90,
            "for_seconds": 2, "keep_firing_for_seconds": 0})
        assert r.status == 201, await r.text()
        rule_id = (await r.json())["id"]
        r = await client.post("/api/v1/alert-rules", headers=user.headers, json={"name": "x", "type": "host_offline",
                                                                                 "workspace_id": ws})
        assert r.status == 422  # a platform rule
        r = await client.post("/api/v1/alert-rules", headers=admin.headers, json={"name": "host down", "type": "host_offline",
                                                                                  "for_seconds": 0})
        assert r.status == 201, await r.text()

        # another tenant sees nothing of it
        assert (await client.get(f"/api/v1/alert-rules/{rule_id}", headers=other.headers)).status == 404
        assert (await client.get("/api/v1/alerts", params={"workspace_id": ws}, headers=other.headers)).status == 404
        assert (await client.get("/api/v1/alerts", headers=user.headers)).status == 403  # platform alerts: admins

        await sample(95)
        assert await evaluate() == []
        [pending] = await alerts(user, workspace_id=ws)
        assert pending["status"] == "pending" and pending["labels"]["environment"] == env_id
        await asyncio.sleep(2.1)
        await sample(96)
        fired = await evaluate()
        assert [(t[0], t[2]) for t in fired] == [(rule_id, "firing")]  # once, though two evaluators ran
        [firing] = await alerts(user, workspace_id=ws, status="firing")
        assert firing["value"] == 96.0 and firing["fired_at"]

        await sample(10)
        assert [t[2] for t in await evaluate()] == ["resolved"]
        [resolved] = await alerts(user, workspace_id=ws)
        assert resolved["status"] == "resolved" and resolved["resolved_at"]

        r = await client.get("/api/v1/notifications", headers=user.headers)
        titles = [n["title"] for n in (await r.json())["items"]]
        assert titles.count("Alert firing: hot GPU") == 1 and titles.count("Alert resolved: hot GPU") == 1

        # the agent stops: its host goes offline and "host down" fires for the admins
        await asyncio.sleep(1.7)
        await container.agent_service().mark_offline_hosts()
        fired = await evaluate()
        assert [t[2] for t in fired] == ["firing"]
        [down] = await alerts(admin, status="firing")
        assert down["labels"]["host_name"] == "gpu-1"
        r = await client.get("/api/v1/notifications", headers=admin.headers)
        assert any(n["title"] == "Alert firing: host down" for n in (await r.json())["items"])
        await agent.beat_once()  # back
        assert [t[2] for t in await evaluate()] == ["resolved"]

        # a silence mutes notifications, not the state
        r = await client.post("/api/v1/alert-silences", headers=user.headers, json={
            "workspace_id": ws, "rule_id": rule_id, "ends_at": "2099-01-01T00:00:00Z", "comment": "maintenance"})
        assert r.status == 201, await r.text()
        r = await client.patch(f"/api/v1/alert-rules/{rule_id}", json={"for_seconds": 0}, headers=user.headers)
        assert r.status == 200 and (await r.json())["for_seconds"] == 0
        await sample(99)
        assert [t[2] for t in await evaluate()] == ["firing"]
        [silenced] = await alerts(user, workspace_id=ws, status="firing")
        assert silenced["silenced"] is True
        r = await client.get("/api/v1/notifications", headers=user.headers)
        assert [n["title"] for n in (await r.json())["items"]].count("Alert firing: hot GPU") == 1
    finally:
        await link.close()


async def test_quota_near_limit_fires_for_the_workspace(client, container, new_account):
    admin = await new_account(admin=True)
    user = await new_account()
    ws = user.personal_workspace_id
    r = await client.put(f"/api/v1/workspaces/{ws}/quota", json={"max_environments": 2}, headers=admin.headers)
    assert r.status == 200, await r.text()
    r = await client.post("/api/v1/alert-rules", headers=user.headers, json={
        "name": "quota", "type": "quota_near_limit", "workspace_id": ws, "threshold": 50, "for_seconds": 0})
    assert r.status == 201, await r.text()
    assert await container.alert_service().evaluate() == []  # nothing used yet
    r = await client.post("/api/v1/environments", json={"name": "one", "workspace_id": ws, "gpu_count": 0, "cpu_cores": 1,
                                                        "memory_gib": 1}, headers=user.headers)
    assert r.status in (201, 202), await r.text()
    assert [t[2] for t in await container.alert_service().evaluate()] == ["firing"]  # 1 of 2 environments: 50 %
    r = await client.get("/api/v1/alerts", params={"workspace_id": ws, "status": "firing"}, headers=user.headers)
    [alert] = (await r.json())["items"]
    assert alert["labels"] == {"workspace": ws} and alert["value"] == 50.0


async def test_balance_low_fires_for_the_wallet_owner_on_real_billing(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, embedded_agent=False, billing_enabled=True)
    container = build_container(settings)
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    user, other = await signup(client), await signup(client)
    ws = user.personal_workspace_id
    r = await client.post("/api/v1/alert-rules", json={"name": "wallet low", "type": "balance_low", "metric": "balance",
                                                      "threshold": 1000, "for_seconds": 0}, headers=admin.headers)
    assert r.status == 201, await r.text()
    assert (await r.json())["metric"] == "balance"
    r = await client.post("/api/v1/alert-rules", json={"name": "x", "type": "balance_low", "workspace_id": ws},
                          headers=other.headers)
    assert r.status == 404  # another tenant's wallet
    r = await client.post("/api/v1/alert-rules", json={"name": "x", "type": "balance_low", "metric": "DCGM_FI_DEV_GPU_UTIL",
                                                      "workspace_id": ws}, headers=user.headers)
    assert r.status == 422
    r = await client.post("/api/v1/billing/wallet/entries", json={"workspace_id": ws, "kind": "topup", "amount": 500,
                                                                  "reason": "first", "reference": "t-1"}, headers=admin.headers)
    assert r.status == 201, await r.text()
    assert [t for _, _, t in await container.alert_service().evaluate()] == ["firing"]
    r = await client.get("/api/v1/notifications", headers=user.headers)
    assert [n["title"] for n in (await r.json())["items"]].count("Alert firing: wallet low") == 1
    r = await client.get("/api/v1/notifications", headers=other.headers)
    assert not [n for n in (await r.json())["items"] if n["title"].startswith("Alert")]
    r = await client.get("/api/v1/alerts", headers=admin.headers)
    [alert] = (await r.json())["items"]
    assert (alert["labels"], alert["value"], alert["status"]) == ({"workspace": ws}, 500.0, "firing")
