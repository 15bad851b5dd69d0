"""The queue and capacity through HTTP: the reported stall, overcommit, capacity hints.

The reported scenario: a 2-core host with fake GPUs, two environments running (1 core
and 1 GPU each), two queued. Deleting a running one must start a queued one at once:
the DELETE's own transaction places it, so it is ``starting`` before any heartbeat
(it used to wait 40+ s for some unrelated event).
"""

from __future__ import annotations

from remotegpu.adapters.fleet.wire import report_to_dict
from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from tests.e2e.test_environments_api import A100, ENVS, FakeAgent, add_host, create


class SmallAgent(FakeAgent):
    """A 2-core, 8 GiB host."""

    def report(self) -> dict:
        return report_to_dict(HostReport(
            gpus=self.gpus, cpu_cores=2, memory_gib=8, disk_gib=100, runtime="memory", runtime_healthy=True,
            fake_gpus=True, observed=[ObservedEnvironment(i, s, g) for i, (s, g) in sorted(self.observed.items())],
        ))


async def small_host(client, admin) -> SmallAgent:
    agent = await add_host(client, admin, spec=f"4x{A100}")
    small = SmallAgent(client, agent.host_id, agent.token, agent.gpus)
    await small.beat()  # now it reports 2 cores
    return small


async def env(client, account, env_id: str) -> dict:
    r = await client.get(f"{ENVS}/{env_id}", headers=account.headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def four_on_two_cores(client, new_account):
    admin = await new_account(admin=True)
    agent = await small_host(client, admin)
    user = await new_account()
    ids = []
    for i in range(4):
        r = await create(client, user, f"e{i}", gpu_model=A100)
        assert r.status in (201, 202), await r.text()
        ids.append((await r.json())["id"])
    await agent.converge()
    states = [(await env(client, user, i))["status"] for i in ids]
    assert states == ["running", "running", "queued", "queued"]
    return admin, agent, user, ids


async def test_deleting_a_running_environment_starts_a_queued_one_at_once(client, new_account):
    _, agent, user, ids = await four_on_two_cores(client, new_account)
    waiting = await env(client, user, ids[3])
    assert "1 vCPU" in waiting["status_message"] and "most free on such a host: 0" in waiting["status_message"], waiting

    r = await client.delete(f"{ENVS}/{ids[0]}", headers=user.headers)
    assert r.status in (200, 202, 204), await r.text()
    # No heartbeat in between: the delete itself let the queue move.
    assert (await env(client, user, ids[2]))["status"] == "starting"
    assert (await env(client, user, ids[3]))["status"] == "queued"
    await agent.converge()
    assert (await env(client, user, ids[2]))["status"] == "running"


async def test_stopping_a_running_environment_starts_a_queued_one_at_once(client, new_account):
    _, _, user, ids = await four_on_two_cores(client, new_account)
    r = await client.post(f"{ENVS}/{ids[1]}/stop", headers=user.headers)
    assert r.status in (200, 202), await r.text()
    assert (await env(client, user, ids[2]))["status"] == "starting"


async def test_raising_overcommit_starts_queued_ones_and_containers_keep_their_limits(client, new_account):
    admin, agent, user, ids = await four_on_two_cores(client, new_account)
    r = await client.patch(f"/api/v1/hosts/{agent.host_id}", json={"cpu_overcommit": 2.0}, headers=admin.headers)
    assert r.status == 200, await r.text()
    host = await r.json()
    assert host["cpu_overcommit"] == 2.0 and host["schedulable_cpu_cores"] == 4 and host["memory_overcommit"] == 1.0
    assert [(await env(client, user, i))["status"] for i in ids[2:]] == ["starting", "starting"]
    reply = await agent.beat()
    specs = [d["spec"] for d in reply["desired"] if d["desired"] == "running"]
    assert len(specs) == 4 and all(s["cpu_cores"] == 1 for s in specs)  # limits as requested, not shrunk


async def test_overcommit_bounds_and_admin_only(client, new_account):
    admin = await new_account(admin=True)
    agent = await small_host(client, admin)
    user = await new_account()
    url = f"/api/v1/hosts/{agent.host_id}"
    for bad in ({"cpu_overcommit": 0.5}, {"memory_overcommit": 11}, {"cpu_overcommit": "x"}, {"nope": 1}):
        r = await client.patch(url, json=bad, headers=admin.headers)
        assert r.status == 422, (bad, await r.text())
        assert (await r.json())["error"]["code"]
    r = await client.patch(url, json={"cpu_overcommit": 2.0}, headers=user.headers)
    assert r.status == 403
    r = await client.patch("/api/v1/hosts/nope", json={"cpu_overcommit": 2.0}, headers=admin.headers)
    assert r.status == 404
    listed = (await (await client.get("/api/v1/hosts", headers=admin.headers)).json())["items"]
    assert listed[0]["cpu_overcommit"] == 1.0 and listed[0]["schedulable_cpu_cores"] == 2


async def test_a_request_larger_than_any_host_is_refused_not_queued_forever(client, new_account):
    admin = await new_account(admin=True)
    agent = await small_host(client, admin)
    user = await new_account()
    r = await create(client, user, "big", gpu_model=A100, cpu_cores=4, memory_gib=4)
    assert r.status == 409
    error = (await r.json())["error"]
    assert error["code"] == "never_fits" and "4 vCPU" in error["message"] and error["details"]["max_cpu_cores"] == 2
    r = await create(client, user, "too-many", gpu_count=8, gpu_model=A100)
    assert r.status == 409 and (await r.json())["error"]["code"] == "never_fits"
    # With overcommit the same request can fit one day (here: now).
    await client.patch(f"/api/v1/hosts/{agent.host_id}", json={"cpu_overcommit": 2.0}, headers=admin.headers)
    r = await create(client, user, "big", gpu_model=A100, cpu_cores=4, memory_gib=4)
    assert r.status in (201, 202), await r.text()


async def test_gpu_types_say_what_can_start_now_for_the_request(client, new_account):
    admin = await new_account(admin=True)
    agent = await small_host(client, admin)
    user = await new_account()

    async def a100(query: str) -> dict:
        r = await client.get(f"/api/v1/gpu-types?{query}", headers=user.headers)
        assert r.status == 200, await r.text()
        return {t["model"]: t for t in (await r.json())["items"]}[A100]

    t = await a100("gpu_count=1&cpu_cores=4&memory_gib=16")
    assert t["free"] == 4 and t["startable_now"] is False and t["ever_fits"] is False
    assert t["cpu_cores_free"] == 2 and t["max_cpu_cores"] == 2 and t["max_memory_gib"] == 8
    t = await a100("gpu_count=1&cpu_cores=1&memory_gib=1")
    assert t["startable_now"] is True and t["ever_fits"] is True
    for i in range(2):
        assert (await create(client, user, f"e{i}", gpu_model=A100)).status in (201, 202)
    await agent.converge()
    t = await a100("gpu_count=1&cpu_cores=1&memory_gib=1")
    assert t["free"] == 2 and t["startable_now"] is False and t["cpu_cores_free"] == 0  # GPUs free, cores not
    r = await client.get("/api/v1/gpu-types?cpu_cores=0", headers=user.headers)
    assert r.status == 422
