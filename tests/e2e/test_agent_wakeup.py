"""Agents act on a change at once, not on their next heartbeat.

The server answers heartbeats with a 30 s interval here, so anything that happens
within a few seconds can only come from the long-poll (``POST /api/v1/agent/wait``
for a remote agent, the same call in-process for the embedded one).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.fleet.http_link import HttpAgentLink
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.runtime.memory import InMemoryRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup

HEARTBEAT = 30.0
ENVS = "/api/v1/environments"


async def wait_status(client, account, env_id: str, status: str, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        r = await client.get(f"{ENVS}/{env_id}", headers=account.headers)
        if (await r.json())["status"] == status:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    pytest.fail(f"environment not {status} within {within}s (heartbeat interval {HEARTBEAT}s)")


async def create(client, account) -> str:
    body = {"name": "quick", "workspace_id": account.personal_workspace_id, "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}
    r = await client.post(ENVS, json=body, headers=account.headers)
    assert r.status == 202, await r.text()
    return (await r.json())["id"]


async def test_a_remote_agent_starts_and_stops_within_moments_of_the_request(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, heartbeat_seconds=HEARTBEAT, embedded_agent=False), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False))
    admin = await signup(client, admin_container=container)
    r = await client.post("/api/v1/hosts", json={"name": "remote-1"}, headers=admin.headers)
    join_token = (await r.json())["join_token"]

    runtime = InMemoryRuntime()
    link = HttpAgentLink(str(client.make_url("")))
    agent = HostAgent(runtime, FakeGpuProbe("2xNVIDIA A100-SXM4-80GB", seed="remote-1"), link, HostSystemInfo(tmp_path),
                      name="remote-1", join_token=join_token, credentials=FileCredentialStore(tmp_path / "agent"))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run_forever(stop))
    try:
        while agent.host_id is None:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the agent is now in its 30 s pause, long-polling

        env_id = await create(client, admin)
        assert await wait_status(client, admin, env_id, "running", within=5) < 5
        assert (await runtime.inspect(env_id)).status == "running"

        r = await client.post(f"{ENVS}/{env_id}/stop", headers=admin.headers)
        assert r.status == 202
        await wait_status(client, admin, env_id, "stopped", within=5)
        assert (await runtime.inspect(env_id)).status == "stopped"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await link.close()


async def test_the_embedded_agent_starts_an_environment_within_moments(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, heartbeat_seconds=HEARTBEAT, runtime="memory",
                             agent_fake_gpus="2xNVIDIA A100-SXM4-80GB", sweep_interval_seconds=60)
    container = build_container(settings, persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=True))
    admin = await signup(client, admin_container=container)
    for _ in range(100):  # the embedded host registers on start-up
        r = await client.get("/api/v1/gpu-types", headers=admin.headers)
        if (await r.json())["total"]:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    env_id = await create(client, admin)
    assert await wait_status(client, admin, env_id, "running", within=5) < 5
