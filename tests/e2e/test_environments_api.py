"""The environments, GPU types, hosts and agent API through HTTP (aiohttp test client).

The ``client`` fixture runs no embedded agent, so these tests play the agent
themselves over the agent endpoints: an admin adds a host (join token), the "agent"
registers and then heartbeats, reporting as running whatever the server wants running.
"""

from __future__ import annotations

from datetime import timedelta

from remotegpu.adapters.fleet.wire import report_to_dict
from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from remotegpu.domain.fleet.models import parse_fake_gpus
from remotegpu.entrypoints.http.keys import CONTAINER
from tests.conftest import signup
from tests.support.workspaces import join_workspace

A100 = "NVIDIA A100-SXM4-80GB"
ENVS = "/api/v1/environments"


class FakeAgent:
    """A perfect agent over HTTP: reports every environment the server wants running as running."""

    def __init__(self, client, host_id: str, token: str, gpus):
        self.client, self.host_id, self.token, self.gpus = client, host_id, token, gpus
        self.observed: dict[str, tuple[str, int | None]] = {}

    def report(self) -> dict:
        return report_to_dict(HostReport(
            gpus=self.gpus, cpu_cores=64, memory_gib=512, disk_gib=1000, runtime="memory", runtime_healthy=True,
            fake_gpus=True, observed=[ObservedEnvironment(i, s, g) for i, (s, g) in sorted(self.observed.items())],
        ))

    async def beat(self) -> dict:
        r = await self.client.post("/api/v1/agent/heartbeat", json=self.report(), headers={"Authorization": f"Bearer {self.token}"})
        assert r.status == 200, await r.text()
        return await r.json()

    async def converge(self) -> dict:
        """Beat, make the "runtime" match the reply, beat again to report it."""
        reply = await self.beat()
        for d in reply["desired"]:
            if d["desired"] == "running":
                self.observed[d["env_id"]] = ("running", d["generation"])
            elif d["desired"] == "stopped":
                if d["env_id"] in self.observed:
                    self.observed[d["env_id"]] = ("stopped", d["generation"])
            else:
                self.observed.pop(d["env_id"], None)
        return await self.beat()


async def add_host(client, admin, name: str = "gpu-1", spec: str = f"4x{A100}") -> FakeAgent:
    r = await client.post("/api/v1/hosts", json={"name": name, "labels": {"zone": "a"}}, headers=admin.headers)
    assert r.status == 201, await r.text()
    created = await r.json()
    assert created["status"] == "offline" and created["join_token"]
    gpus = parse_fake_gpus(spec, seed=name)
    agent = FakeAgent(client, created["id"], "", gpus)
    r = await client.post("/api/v1/agent/register", json={"join_token": created["join_token"], "name": name, "report": agent.report()})
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["host_id"] == created["id"]
    agent.token = body["agent_token"]
    return agent


async def admin_and_host(client, new_account, spec: str = f"4x{A100}"):
    admin = await new_account(admin=True)
    return admin, await add_host(client, admin, spec=spec)


async def create(client, account, name: str, gpu_count: int = 1, workspace_id: str | None = None, **extra):
    body = {"name": name, "workspace_id": workspace_id or account.personal_workspace_id, "gpu_count": gpu_count,
            "cpu_cores": 1, "memory_gib": 1, **extra}
    return await client.post(ENVS, json=body, headers=account.headers)


async def created(client, account, name: str, gpu_count: int = 1, **extra) -> dict:
    r = await create(client, account, name, gpu_count, **extra)
    assert r.status == 202, await r.text()
    return await r.json()


async def get(client, account, env_id: str) -> dict:
    r = await client.get(f"{ENVS}/{env_id}", headers=account.headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def free_gpus(client, account) -> dict[str, tuple[int, int]]:
    r = await client.get("/api/v1/gpu-types", headers=account.headers)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["total"] == len(body["items"])
    return {t["model"]: (t["total"], t["free"]) for t in body["items"]}


# --- create, statuses, gpu types -------------------------------------------------------


async def test_create_answers_202_starting_then_running_and_gpu_types_count_down(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    assert await free_gpus(client, user) == {A100: (4, 4)}

    env = await created(client, user, "train", gpu_count=3, env={"WANDB_MODE": "offline"})
    assert env["status"] == "starting" and env["desired"] == "running" and env["queue_position"] is None
    assert env["host_id"] == agent.host_id and env["host_name"] == "gpu-1"
    assert len(env["gpus"]) == 3 and {g["model"] for g in env["gpus"]} == {A100}
    assert {p["purpose"] for p in env["ports"]} >= {"ssh"}
    assert env["image"] == "remotegpu/base:latest" and env["env"] == {"WANDB_MODE": "offline"}
    assert "jupyter_token" not in env
    assert await free_gpus(client, user) == {A100: (4, 1)}

    # The agent hears the desired state with the full spec, and reports the container running.
    reply = await agent.beat()
    (desired,) = reply["desired"]
    assert desired["env_id"] == env["id"] and desired["desired"] == "running"
    spec = desired["spec"]
    assert spec["gpu_uuids"] == [g["uuid"] for g in env["gpus"]] and spec["fake_gpus"] is True
    assert spec["env"]["WANDB_MODE"] == "offline" and spec["env"]["REMOTEGPU_ENV_ID"] == env["id"]
    assert (spec["cpu_cores"], spec["memory_gib"]) == (1.0, 1.0)
    await agent.converge()
    env = await get(client, user, env["id"])
    assert env["status"] == "running" and env["started_at"] is not None

    # Access answers once running.
    r = await client.get(f"{ENVS}/{env['id']}/access", headers=user.headers)
    access = await r.json()
    assert r.status == 200 and access["ssh"]["port"] == next(p["port"] for p in env["ports"] if p["purpose"] == "ssh")
    # The platform made its host key with it: the known_hosts line is there from the first answer.
    assert access["ssh"]["known_hosts"].startswith(f"[{access['ssh']['host']}]:{access['ssh']['port']} ssh-ed25519 ")

    # One more than what is free waits in the queue, with its position.
    waiting = await created(client, user, "big", gpu_count=2)
    assert waiting["status"] == "queued" and waiting["queue_position"] == 1 and waiting["gpus"] == []
    assert await free_gpus(client, user) == {A100: (4, 1)}


async def test_stop_releases_gpus_at_once_start_and_restart_and_delete(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    env = await created(client, user, "a", gpu_count=2)
    await agent.converge()

    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=user.headers)
    assert r.status == 202 and (await r.json())["status"] == "stopping"
    assert await free_gpus(client, user) == {A100: (4, 4)}  # released now, not when the container is gone
    await agent.converge()
    assert (await get(client, user, env["id"]))["status"] == "stopped"
    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=user.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_state"
    r = await client.post(f"{ENVS}/{env['id']}/restart", headers=user.headers)
    assert r.status == 409

    # Start without GPUs: cheap data work holds no GPU.
    r = await client.post(f"{ENVS}/{env['id']}/start", json={"gpu": False}, headers=user.headers)
    assert r.status == 202, await r.text()
    body = await r.json()
    assert body["status"] == "starting" and body["with_gpu"] is False and body["gpus"] == []
    assert await free_gpus(client, user) == {A100: (4, 4)}
    await agent.converge()
    await client.post(f"{ENVS}/{env['id']}/stop", headers=user.headers)
    await agent.converge()

    r = await client.post(f"{ENVS}/{env['id']}/start", json={}, headers=user.headers)
    assert r.status == 202 and len((await r.json())["gpus"]) == 2
    await agent.converge()
    before = (await agent.beat())["desired"][0]["generation"]
    r = await client.post(f"{ENVS}/{env['id']}/restart", headers=user.headers)
    assert r.status == 202 and (await r.json())["status"] == "starting"
    reply = await agent.converge()
    assert reply["desired"][0]["generation"] == before + 1
    assert (await get(client, user, env["id"]))["status"] == "running"

    r = await client.delete(f"{ENVS}/{env['id']}", headers=user.headers)
    assert r.status == 202 and (await r.json())["status"] == "deleting"
    assert await free_gpus(client, user) == {A100: (4, 4)}
    reply = await agent.converge()
    assert reply["desired"] == []  # deleted: the agent no longer hears of it
    assert (await client.get(f"{ENVS}/{env['id']}", headers=user.headers)).status == 404
    assert (await (await client.get(ENVS, headers=user.headers)).json())["total"] == 0


async def test_queued_environment_starts_by_itself_when_gpus_free_up(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    first = await created(client, user, "first", gpu_count=4)
    second = await created(client, user, "second", gpu_count=1)
    third = await created(client, user, "third", gpu_count=1)
    assert (second["status"], second["queue_position"]) == ("queued", 1)
    assert (third["status"], third["queue_position"]) == ("queued", 2)
    await agent.converge()
    r = await client.delete(f"{ENVS}/{first['id']}", headers=user.headers)
    assert r.status == 202
    assert (await get(client, user, second["id"]))["status"] == "starting"
    assert (await get(client, user, third["id"]))["status"] == "starting"
    await agent.converge()
    assert (await get(client, user, third["id"]))["status"] == "running"
    assert await free_gpus(client, user) == {A100: (4, 2)}


# --- list, events ------------------------------------------------------------------------


async def test_list_filters_by_status_and_workspace_and_paginates_newest_first(client, new_account):
    admin, agent = await admin_and_host(client, new_account, spec=f"2x{A100}")
    user = await new_account()
    team = await (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=user.headers)).json()
    team_env = await created(client, user, "t0", gpu_count=0, workspace_id=team["id"])
    ids = [(await created(client, user, f"p{i}", gpu_count=1))["id"] for i in range(4)]  # 2 start, 2 queue

    page = await (await client.get(ENVS, headers=user.headers)).json()
    assert page["total"] == 5 and [e["id"] for e in page["items"]] == [*ids[::-1], team_env["id"]]
    page = await (await client.get(f"{ENVS}?limit=2&offset=1", headers=user.headers)).json()
    assert page["total"] == 5 and [e["id"] for e in page["items"]] == [ids[2], ids[1]]
    page = await (await client.get(f"{ENVS}?status=queued", headers=user.headers)).json()
    assert page["total"] == 2 and {e["id"] for e in page["items"]} == set(ids[2:])
    assert sorted(e["queue_position"] for e in page["items"]) == [1, 2]
    page = await (await client.get(f"{ENVS}?workspace_id={team['id']}", headers=user.headers)).json()
    assert page["total"] == 1 and page["items"][0]["id"] == team_env["id"]
    page = await (await client.get(f"{ENVS}?workspace_id={user.personal_workspace_id}&status=starting", headers=user.headers)).json()
    assert {e["id"] for e in page["items"]} == set(ids[:2])

    for bad in ("limit=0", "limit=501", "offset=-1", "status=sleeping", "limit=abc", "colour=red"):
        r = await client.get(f"{ENVS}?{bad}", headers=user.headers)
        assert r.status == 422, bad
    other = await new_account()
    assert (await client.get(f"{ENVS}?workspace_id={team['id']}", headers=other.headers)).status == 404
    assert (await (await client.get(ENVS, headers=other.headers)).json())["total"] == 0


async def test_events_are_a_timeline_of_every_transition_with_its_reason(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    env = await created(client, user, "e", gpu_count=1)
    await agent.converge()
    await client.post(f"{ENVS}/{env['id']}/stop", headers=user.headers)
    await agent.converge()

    r = await client.get(f"{ENVS}/{env['id']}/events", headers=user.headers)
    assert r.status == 200
    events = await r.json()
    steps = [(e["from_status"], e["to_status"]) for e in events["items"]]
    assert steps == [(None, "queued"), ("queued", "starting"), ("starting", "running"), ("running", "stopping"), ("stopping", "stopped")]
    assert events["total"] == 5
    reasons = [e["reason"] for e in events["items"]]
    assert reasons[0] == "created" and "placed on a host" in reasons[1] and "running" in reasons[2]
    assert reasons[3] == f"stopped by {user.username}" and "disk kept" in reasons[4]
    times = [e["at"] for e in events["items"]]
    assert times == sorted(times)
    page = await (await client.get(f"{ENVS}/{env['id']}/events?limit=2&offset=3", headers=user.headers)).json()
    assert page["total"] == 5 and [e["to_status"] for e in page["items"]] == ["stopping", "stopped"]


# --- who may do what ------------------------------------------------------------------------


async def test_another_tenant_gets_404_on_every_environment_endpoint(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    owner, stranger = await new_account(), await new_account()
    env = await created(client, owner, "mine", gpu_count=1)
    await agent.converge()
    url = f"{ENVS}/{env['id']}"
    calls = [
        ("GET", url, None), ("GET", url + "/events", None), ("GET", url + "/access", None),
        ("POST", url + "/start", {}), ("POST", url + "/stop", None), ("POST", url + "/restart", None), ("DELETE", url, None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, json=body, headers=stranger.headers)
        assert r.status == 404, (method, path, r.status)
        assert (await r.json())["error"]["code"] == "not_found"
    # Creating in someone else's workspace: that workspace does not exist for the stranger.
    r = await create(client, stranger, "x", workspace_id=owner.personal_workspace_id)
    assert r.status == 404
    # An unknown id is the same 404 for the owner; without a token it is a 401.
    assert (await client.get(f"{ENVS}/nope", headers=owner.headers)).status == 404
    assert (await client.get(url)).status == 401
    # Nothing changed for the owner.
    assert (await get(client, owner, env["id"]))["status"] == "running"


async def test_viewer_sees_but_cannot_operate_members_operate_their_own_admins_all(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    owner, viewer, member, ws_admin = [await new_account() for _ in range(4)]
    team = await (await client.post("/api/v1/workspaces", json={"name": "lab"}, headers=owner.headers)).json()
    for account, role in ((viewer, "viewer"), (member, "member"), (ws_admin, "admin")):
        await join_workspace(client, owner, team["id"], account, role)
    env = await created(client, owner, "shared-box", gpu_count=1, workspace_id=team["id"])
    await agent.converge()

    assert (await get(client, viewer, env["id"]))["status"] == "running"
    assert (await client.get(f"{ENVS}/{env['id']}/events", headers=viewer.headers)).status == 200
    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=viewer.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_environment_owner"
    r = await create(client, viewer, "nope", workspace_id=team["id"])
    assert r.status == 403
    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=member.headers)
    assert r.status == 403  # a member operates only their own
    assert (await get(client, owner, env["id"]))["status"] == "running"
    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=ws_admin.headers)
    assert r.status == 202 and (await r.json())["status"] == "stopping"
    assert (await (await client.get(f"{ENVS}?workspace_id={team['id']}", headers=viewer.headers)).json())["total"] == 1


# --- quotas and bad input ---------------------------------------------------------------------


async def test_quota_exceeded_is_409_with_details_and_nothing_is_created(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    r = await client.put(f"/api/v1/workspaces/{user.personal_workspace_id}/quota", json={"max_gpus": 2, "max_environments": 3}, headers=admin.headers)
    assert r.status == 200
    await created(client, user, "one", gpu_count=2)
    r = await create(client, user, "two", gpu_count=1)
    assert r.status == 409
    error = (await r.json())["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"]["violations"] == [{"resource": "gpus", "limit": 2, "used": 2, "requested": 1}]
    # CPU-only work still fits until the environment count runs out.
    await created(client, user, "cpu1", gpu_count=0)
    await created(client, user, "cpu2", gpu_count=0)
    r = await create(client, user, "cpu3", gpu_count=0)
    assert r.status == 409
    assert [v["resource"] for v in (await r.json())["error"]["details"]["violations"]] == ["environments"]
    page = await (await client.get(ENVS, headers=user.headers)).json()
    assert page["total"] == 3 and {e["name"] for e in page["items"]} == {"one", "cpu1", "cpu2"}
    assert await free_gpus(client, user) == {A100: (4, 2)}
    q = await (await client.get(f"/api/v1/workspaces/{user.personal_workspace_id}/quota", headers=user.headers)).json()
    assert q["usage"]["gpus"] == 2 and q["usage"]["environments"] == 3


async def test_disks_count_against_the_storage_quota_until_deleted(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    quota_url = f"/api/v1/workspaces/{user.personal_workspace_id}/quota"
    r = await client.put(quota_url, json={"max_storage_gib": 120}, headers=admin.headers)
    assert r.status == 200, await r.text()
    one = await created(client, user, "one", gpu_count=1)
    assert one["disk_gib"] == 50  # the default
    two = await created(client, user, "two", gpu_count=0, disk_gib=70)
    assert two["disk_gib"] == 70 and (await get(client, user, two["id"]))["disk_gib"] == 70
    r = await create(client, user, "three", gpu_count=0, disk_gib=1)
    assert r.status == 409
    error = (await r.json())["error"]
    assert error["code"] == "quota_exceeded" and "storage_gib" in error["message"]
    assert error["details"]["violations"] == [{"resource": "storage_gib", "limit": 120, "used": 120, "requested": 1}]
    # Stopped: the disk is kept, so it still counts; starting again asks for no more storage.
    await agent.converge()
    r = await client.post(f"{ENVS}/{one['id']}/stop", headers=user.headers)
    assert r.status == 202, await r.text()
    await agent.converge()
    assert (await get(client, user, one["id"]))["status"] == "stopped"
    q = await (await client.get(quota_url, headers=user.headers)).json()
    assert q["usage"]["storage_gib"] == 120 and q["max_storage_gib"] == 120
    assert (await create(client, user, "three", gpu_count=0, disk_gib=1)).status == 409
    r = await client.post(f"{ENVS}/{one['id']}/start", json={}, headers=user.headers)
    assert r.status == 202, await r.text()
    # Deleting frees it once the agent has removed the volume.
    r = await client.delete(f"{ENVS}/{two['id']}", headers=user.headers)
    assert r.status in (200, 202), await r.text()
    await agent.converge()
    q = await (await client.get(quota_url, headers=user.headers)).json()
    assert q["usage"]["storage_gib"] == 50
    assert (await created(client, user, "three", gpu_count=0, disk_gib=70))["disk_gib"] == 70


async def test_bad_input_is_422_and_creates_nothing(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    ws = user.personal_workspace_id
    bad_bodies = [
        {"name": "a", "workspace_id": ws, "gpu_count": 9},
        {"name": "a", "workspace_id": ws, "gpu_count": -1},
        {"name": "a", "workspace_id": ws, "gpu_count": "two"},
        {"name": "a", "workspace_id": ws, "gpus": 1},  # unknown field
        {"name": "a", "workspace_id": ws, "env": {"BAD-KEY": "x"}},
        {"name": "a", "workspace_id": ws, "env": {"1LEADING_DIGIT": "x"}},
        {"name": "a", "workspace_id": ws, "env": {"": "x"}},
        {"name": "a", "workspace_id": ws, "env": {"OK": 1}},
        {"name": "", "workspace_id": ws},
        {"name": "a"},
        {"name": "a", "workspace_id": ws, "cpu_cores": 0},
        {"name": "a", "workspace_id": ws, "memory_gib": 0},
        {"name": "a", "workspace_id": ws, "disk_gib": 0},
        {"name": "a", "workspace_id": ws, "disk_gib": 4097},
    ]
    for body in bad_bodies:
        r = await client.post(ENVS, json=body, headers=user.headers)
        assert r.status == 422, (body, r.status, await r.text())
        assert (await r.json())["error"]["code"] in ("invalid_input", "validation_error"), body
    r = await client.post(ENVS, data="{not json", headers={**user.headers, "Content-Type": "application/json"})
    assert r.status in (400, 422)
    r = await client.post(f"{ENVS}/nope/start", json={"gpu": "maybe"}, headers=user.headers)
    assert r.status in (404, 422)
    assert (await (await client.get(ENVS, headers=user.headers)).json())["total"] == 0
    assert await free_gpus(client, user) == {A100: (4, 4)}
    assert (await agent.beat())["desired"] == []
    # A good key passes.
    env = await created(client, user, "ok", gpu_count=0, env={"_UNDER_score9": "v=1 with spaces"})
    assert env["env"] == {"_UNDER_score9": "v=1 with spaces"}


# --- the agent endpoints ------------------------------------------------------------------------


async def test_agent_endpoints_reject_bad_tokens_and_malformed_reports(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    good = agent.report()
    for headers in ({}, {"Authorization": "Bearer rga_wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        r = await client.post("/api/v1/agent/heartbeat", json=good, headers=headers)
        assert r.status == 401, headers
        assert (await r.json())["error"]["code"] == "invalid_agent_token"
    auth = {"Authorization": f"Bearer {agent.token}"}
    malformed = [
        {**good, "gpus": "all of them"},
        {**good, "cpu_cores": "64"},
        {**good, "runtime_healthy": 1},
        {k: v for k, v in good.items() if k != "memory_gib"},
        {**good, "gpus": [{"index": 0, "model": A100, "memory_mib": 1}]},  # no uuid
        {**good, "gpus": [good["gpus"][0], good["gpus"][0]]},  # one GPU twice
        {**good, "observed": [{"env_id": "x", "status": "dancing"}]},
        {**good, "utilization": {good["gpus"][0]["uuid"]: 101}},
    ]
    for report in malformed:
        r = await client.post("/api/v1/agent/heartbeat", json=report, headers=auth)
        assert r.status == 422, (report, await r.text())
        assert (await r.json())["error"]["code"] == "invalid_report"
    r = await client.post("/api/v1/agent/heartbeat", data="[1, 2]", headers={**auth, "Content-Type": "application/json"})
    assert r.status in (400, 422)
    # The host kept its inventory through all that.
    hosts = await (await client.get("/api/v1/hosts", headers=admin.headers)).json()
    assert len(hosts["items"][0]["gpus"]) == 4 and hosts["items"][0]["status"] == "ready"

    # Registration: a join token is one-time, a wrong one is refused, a bad report is 422.
    r = await client.post("/api/v1/agent/register", json={"join_token": "rgj_wrong", "name": "x", "report": good})
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_join_token"
    host = await (await client.post("/api/v1/hosts", json={"name": "gpu-2"}, headers=admin.headers)).json()
    r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "gpu-2", "report": {**good, "gpus": 3}})
    assert r.status == 422
    r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "gpu-2", "report": good, "extra": 1})
    assert r.status == 422
    r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "gpu-2", "report": good})
    assert r.status == 201, await r.text()  # the bad tries did not burn the token
    r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "gpu-2", "report": good})
    assert r.status == 401  # ...but a successful one did


# --- host administration ----------------------------------------------------------------------


async def test_admin_lists_cordons_uncordons_and_drains_hosts(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    env = await created(client, user, "on-host", gpu_count=2)
    await agent.converge()

    r = await client.get("/api/v1/hosts", headers=admin.headers)
    assert r.status == 200
    hosts = await r.json()
    assert hosts["total"] == 1
    host = hosts["items"][0]
    assert host["id"] == agent.host_id and host["status"] == "ready" and host["labels"] == {"zone": "a"}
    assert host["fake_gpus"] is True and host["runtime"] == "memory" and host["environments"] == 1
    assert host["last_heartbeat_at"] is not None and "join_token" not in host
    assert sorted(g["index"] for g in host["gpus"]) == [0, 1, 2, 3]
    held = {g["uuid"] for g in env["gpus"]}
    assert {g["uuid"] for g in host["gpus"] if g["allocated"]} == held
    url = f"/api/v1/hosts/{agent.host_id}"
    assert (await (await client.get(url, headers=admin.headers)).json())["id"] == agent.host_id

    # Cordoned: running stays, nothing new lands.
    r = await client.post(url + "/cordon", headers=admin.headers)
    assert r.status == 200 and (await r.json())["status"] == "cordoned"
    waiting = await created(client, user, "waits", gpu_count=1)
    assert waiting["status"] == "queued"
    assert (await get(client, user, env["id"]))["status"] == "running"
    assert await free_gpus(client, user) == {}  # a cordoned host offers nothing
    await agent.converge()
    assert (await (await client.get(url, headers=admin.headers)).json())["status"] == "cordoned"  # a beat keeps it

    r = await client.post(url + "/uncordon", headers=admin.headers)
    assert r.status == 200 and (await r.json())["status"] == "ready"
    await agent.converge()  # the queue moves on the next beat
    assert (await get(client, user, waiting["id"]))["status"] == "running"

    # Drain: everything on it stops (disks kept), nothing new lands.
    r = await client.post(url + "/drain", headers=admin.headers)
    assert r.status == 200 and (await r.json())["status"] == "draining"
    await agent.converge()
    for env_id in (env["id"], waiting["id"]):
        assert (await get(client, user, env_id))["status"] == "stopped"
        events = await (await client.get(f"{ENVS}/{env_id}/events", headers=user.headers)).json()
        assert any(e["to_status"] == "stopping" and e["reason"] == "host gpu-1 is being drained" for e in events["items"])
    assert (await client.delete(url, headers=admin.headers)).status == 409  # not empty
    assert (await client.post("/api/v1/hosts/nope/cordon", headers=admin.headers)).status == 404
    r = await client.post("/api/v1/hosts", json={"name": "gpu-1"}, headers=admin.headers)
    assert r.status == 409
    assert (await client.post("/api/v1/hosts", json={"name": "x", "colour": 1}, headers=admin.headers)).status == 422


async def go_silent(client, host_id: str) -> None:
    """The host's agent misses its heartbeats (last one backdated) and the server marks it offline."""
    container = client.server.app[CONTAINER]
    async with container.uow() as uow:
        host = await uow.hosts.get(host_id)
        host.last_heartbeat_at -= timedelta(hours=1)
        await uow.hosts.update(host)
        await uow.commit()
    assert await container.agent_service().mark_offline_hosts() == [host_id]


async def test_a_cordon_survives_the_host_going_offline_and_uncordon_works_while_offline(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    url = f"/api/v1/hosts/{agent.host_id}"
    host = await (await client.get(url, headers=admin.headers)).json()
    assert (host["status"], host["schedulable"]) == ("ready", "ready")
    env = await created(client, user, "before", gpu_count=1)
    await agent.converge()
    r = await client.post(url + "/cordon", headers=admin.headers)
    assert r.status == 200 and ((await r.json())["status"], (await r.json())["schedulable"]) == ("cordoned", "cordoned")

    # Maintenance: the host reboots, misses its heartbeats, goes offline...
    await go_silent(client, agent.host_id)
    host = await (await client.get(url, headers=admin.headers)).json()
    assert (host["status"], host["schedulable"]) == ("offline", "cordoned")
    assert (await get(client, user, env["id"]))["status"] == "lost"
    waiting = await created(client, user, "waiting", gpu_count=1)
    assert waiting["status"] == "queued"

    # ...and its agent reports again: the old work resumes, nothing new lands, still cordoned.
    await agent.converge()
    host = await (await client.get(url, headers=admin.headers)).json()
    assert (host["status"], host["schedulable"]) == ("cordoned", "cordoned")
    assert (await get(client, user, env["id"]))["status"] == "running"
    assert (await get(client, user, waiting["id"]))["status"] == "queued"
    assert await free_gpus(client, user) == {}

    # Uncordon while offline is accepted: the host stays offline, and is ready when it reports.
    await go_silent(client, agent.host_id)
    r = await client.post(url + "/uncordon", headers=admin.headers)
    assert r.status == 200, await r.text()
    assert ((await r.json())["status"], (await r.json())["schedulable"]) == ("offline", "ready")
    assert (await get(client, user, waiting["id"]))["status"] == "queued"
    await agent.beat()  # back and ready: the queue moves onto it
    host = await (await client.get(url, headers=admin.headers)).json()
    assert (host["status"], host["schedulable"]) == ("ready", "ready")
    assert (await get(client, user, waiting["id"]))["status"] == "starting"
    await agent.converge()
    assert (await get(client, user, waiting["id"]))["status"] == "running"

    # Drain while offline: recorded, its environments stop, and it comes back draining.
    await go_silent(client, agent.host_id)
    r = await client.post(url + "/drain", headers=admin.headers)
    assert r.status == 200 and ((await r.json())["status"], (await r.json())["schedulable"]) == ("offline", "draining")
    await agent.converge()
    host = await (await client.get(url, headers=admin.headers)).json()
    assert (host["status"], host["schedulable"]) == ("draining", "draining")
    for env_id in (env["id"], waiting["id"]):
        assert (await get(client, user, env_id))["status"] == "stopped"


async def test_host_endpoints_are_for_platform_admins_only(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    url = f"/api/v1/hosts/{agent.host_id}"
    calls = [
        ("GET", "/api/v1/hosts", None), ("POST", "/api/v1/hosts", {"name": "sneaky"}), ("GET", url, None),
        ("POST", url + "/cordon", None), ("POST", url + "/uncordon", None), ("POST", url + "/drain", None), ("DELETE", url, None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, json=body, headers=user.headers)
        assert r.status == 403, (method, path, r.status)
        r = await client.request(method, path, json=body)
        assert r.status == 401, (method, path, r.status)
    hosts = await (await client.get("/api/v1/hosts", headers=admin.headers)).json()
    assert [h["name"] for h in hosts["items"]] == ["gpu-1"] and hosts["items"][0]["status"] == "ready"
    # Everyone signed in may see GPU types; nobody anonymous.
    assert (await client.get("/api/v1/gpu-types")).status == 401
    assert await free_gpus(client, user) == {A100: (4, 4)}


async def test_without_hosts_environments_queue_and_start_when_a_host_joins(client, new_account):
    user = await signup(client)
    env = await created(client, user, "no-host", gpu_count=1)
    assert env["status"] == "queued" and env["queue_position"] == 1 and env["host_id"] is None
    gone = await created(client, user, "never-placed", gpu_count=1)
    r = await client.delete(f"{ENVS}/{gone['id']}", headers=user.headers)
    assert r.status == 202 and (await r.json())["status"] == "deleted"  # never placed: gone at once
    assert await free_gpus(client, user) == {}

    admin = await new_account(admin=True)
    agent = await add_host(client, admin)  # new capacity: the queue moves
    env = await get(client, user, env["id"])
    assert env["status"] == "starting" and env["host_id"] == agent.host_id and env["queue_position"] is None
    await agent.converge()
    assert (await get(client, user, env["id"]))["status"] == "running"
    assert await free_gpus(client, user) == {A100: (4, 3)}
