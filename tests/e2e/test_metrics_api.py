"""Metrics through the real agent → server path: an agent's batch lands tagged with the
environment holding the GPU, readable by who may see that environment (another
tenant: 404), per-environment series on /metrics."""

from __future__ import annotations

import asyncio
import json

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


async def _world(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, embedded_agent=False, metrics_token="scrape-token-123")
    container = build_container(settings)  # SQLite: the embedded metrics store for real
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    r = await client.post("/api/v1/hosts", json={"name": "gpu-1"}, headers=admin.headers)
    join_token = (await r.json())["join_token"]
    control = tmp_path / "fake-gpus.json"
    probe = FakeGpuProbe("2xNVIDIA A100-SXM4-80GB", seed="gpu-1", control_file=control)
    link = HttpAgentLink(str(client.make_url("")))
    agent = HostAgent(InMemoryRuntime(), probe, link, HostSystemInfo(tmp_path), name="gpu-1", join_token=join_token,
                      credentials=FileCredentialStore(tmp_path / "agent"),
                      collector=MetricsCollector(probe, None, interval_seconds=1))
    return container, client, admin, agent, link, control, probe


async def test_agent_batches_are_tagged_with_the_environment_and_authorized_like_it(aiohttp_client, tmp_path):
    container, client, admin, agent, link, control, probe = await _world(aiohttp_client, tmp_path)
    try:
        user = await signup(client)
        other = await signup(client)
        await agent.beat_once()
        r = await client.post("/api/v1/environments", json={"name": "train", "workspace_id": user.personal_workspace_id,
                                                            "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}, headers=user.headers)
        assert r.status == 202, await r.text()
        env_id = (await r.json())["id"]
        await agent.beat_once()  # placed → running
        held = [g for g in (await (await client.get(f"/api/v1/environments/{env_id}", headers=user.headers)).json())
                .get("gpu_uuids", [])]
        control.write_text(json.dumps({"*": {"DCGM_FI_DEV_GPU_UTIL": 95}}))
        container.metrics_service().forget_tags()
        assert await agent.collector.collect_once() == 2 * 7  # 7 DCGM fields × 2 GPUs
        await agent.beat_once()  # the heartbeat, then the batch on the same link
        assert len(agent.collector) == 0

        r = await client.get("/api/v1/metrics", params={"scope": "environment", "id": env_id}, headers=user.headers)
        assert r.status == 200, await r.text()
        items = (await r.json())["items"]
        util = [i for i in items if i["metric"] == "DCGM_FI_DEV_GPU_UTIL"]
        assert len(util) == 1 and util[0]["value"] == 95.0  # only the GPU the environment holds
        assert util[0]["environment_id"] == env_id and util[0]["workspace_id"] == user.personal_workspace_id
        if held:
            assert util[0]["gpu_uuid"] in held
        assert {i["metric"] for i in items} >= {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP"}

        r = await client.get("/api/v1/metrics/history", params={"scope": "environment", "id": env_id,
                                                                "metric": "DCGM_FI_DEV_GPU_UTIL", "step": 60},
                             headers=user.headers)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["step"] == 60 and len(body["series"]) == 1
        assert body["series"][0]["points"][-1]["max"] == 95.0

        # another tenant: the environment does not exist for them; hosts and the fleet are admins'
        for params in ({"scope": "environment", "id": env_id}, {"scope": "workspace", "id": user.personal_workspace_id}):
            r = await client.get("/api/v1/metrics", params=params, headers=other.headers)
            assert r.status == 404, await r.text()
        r = await client.get("/api/v1/metrics", params={"scope": "fleet"}, headers=user.headers)
        assert r.status == 403
        r = await client.get("/api/v1/metrics", params={"scope": "fleet"}, headers=admin.headers)
        assert {i["gpu_uuid"] for i in (await r.json())["items"]} == {g.uuid for g in probe.inventory()}
        r = await client.get("/api/v1/metrics/history", params={"scope": "environment", "id": env_id, "metric": "nope"},
                             headers=user.headers)
        assert r.status == 422 and (await r.json())["error"]["code"] == "unknown_metric"

        # Prometheus' view: per-environment series with the platform's labels
        r = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
        text = await r.text()
        assert r.status == 200
        assert f'DCGM_FI_DEV_GPU_UTIL{{environment="{env_id}",workspace="{user.personal_workspace_id}",' in text
    finally:
        await link.close()


async def test_a_bad_batch_is_refused_and_a_foreign_token_is_401(aiohttp_client, tmp_path):
    container, client, admin, agent, link, control, probe = await _world(aiohttp_client, tmp_path)
    try:
        await agent.beat_once()
        token = agent._token
        r = await client.post("/api/v1/agent/metrics", json={"samples": [[1, "DCGM_FI_DEV_GPU_UTIL", "x", "", ""]]},
                              headers={"Authorization": f"Bearer {token}"})
        assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_metrics"
        r = await client.post("/api/v1/agent/metrics", json={"samples": []}, headers={"Authorization": "Bearer rga_nope"})
        assert r.status == 401
        # rows naming an environment that is not on this host are dropped, not stored
        r = await client.post("/api/v1/agent/metrics", json={"samples": [[__import__("time").time(),
                              "remotegpu_container_cpu_percent", 50, "someone-elses-env", ""]]},
                              headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200 and (await r.json())["accepted"] == 0
        # nor rows about a GPU this host does not have
        r = await client.post("/api/v1/agent/metrics", json={"samples": [[__import__("time").time(),
                              "DCGM_FI_DEV_GPU_UTIL", 50, "", "GPU-of-another-host"]]},
                              headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200 and (await r.json())["accepted"] == 0
    finally:
        await link.close()


async def test_a_host_registered_after_the_fleet_was_read_is_tagged_at_once(aiohttp_client, tmp_path):
    """Tagging and agent tokens are read for the whole fleet once per TTL; a host that
    joined since (its token and GPUs unknown to that read) is looked up on its own, so its
    first batch is stored, not dropped until the next read."""
    container, client, admin, agent, link, control, probe = await _world(aiohttp_client, tmp_path)
    link2 = None
    try:
        await agent.beat_once()
        assert await agent.collector.collect_once() == 2 * 7
        await agent.beat_once()  # the first batch: the fleet (one host) is read now
        r = await client.post("/api/v1/hosts", json={"name": "gpu-2"}, headers=admin.headers)
        host2, join2 = (await r.json())["id"], (await r.json())["join_token"]
        probe2 = FakeGpuProbe("1xNVIDIA A100-SXM4-80GB", seed="gpu-2")
        link2 = HttpAgentLink(str(client.make_url("")))
        agent2 = HostAgent(InMemoryRuntime(), probe2, link2, HostSystemInfo(tmp_path / "h2"), name="gpu-2", join_token=join2,
                           credentials=FileCredentialStore(tmp_path / "agent2"),
                           collector=MetricsCollector(probe2, None, interval_seconds=1))
        await agent2.beat_once()
        assert await agent2.collector.collect_once() == 7
        await agent2.beat_once()
        r = await client.get("/api/v1/metrics", params={"scope": "host", "id": host2}, headers=admin.headers)
        assert r.status == 200, await r.text()
        assert {i["gpu_uuid"] for i in (await r.json())["items"]} == {g.uuid for g in probe2.inventory()}
    finally:
        await link.close()
        if link2 is not None:
            await link2.close()
