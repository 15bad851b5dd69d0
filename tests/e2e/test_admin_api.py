from __future__ import annotations

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.keys import CONTAINER
from tests.conftest import make_settings, signup


async def admin_of(client):
    return await signup(client, admin_container=client.server.app[CONTAINER])


async def test_disabling_a_user_stops_their_access_and_api_tokens_at_the_next_request(client):
    admin, bob = await admin_of(client), await signup(client)
    api_token = (await (await client.post("/api/v1/users/me/tokens", json={"name": "x"}, headers=bob.headers)).json())["token"]
    r = await client.patch(f"/api/v1/users/{bob.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status == 200 and (await r.json())["is_active"] is False
    for bearer in (bob.token, api_token):
        r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {bearer}"})
        assert r.status == 401
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": bob.refresh_token})
    assert r.status == 401
    r = await client.post("/api/v1/auth/login", json={"username": bob.username, "password": bob.password})
    assert r.status == 401
    await client.patch(f"/api/v1/users/{bob.id}", json={"is_active": True}, headers=admin.headers)
    r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {api_token}"})
    assert r.status == 200


async def test_promote_and_demote_admins(client):
    admin, carol = await admin_of(client), await signup(client)
    assert (await client.get("/api/v1/users", headers=carol.headers)).status == 403
    await client.patch(f"/api/v1/users/{carol.id}", json={"is_admin": True}, headers=admin.headers)
    assert (await client.get("/api/v1/users", headers=carol.headers)).status == 200
    await client.patch(f"/api/v1/users/{carol.id}", json={"is_admin": False}, headers=admin.headers)
    assert (await client.get("/api/v1/users", headers=carol.headers)).status == 403


async def test_admins_cannot_lock_themselves_out(client):
    admin = await admin_of(client)
    r = await client.patch(f"/api/v1/users/{admin.id}", json={"is_admin": False}, headers=admin.headers)
    assert r.status == 409


async def test_user_search_and_pagination(client):
    admin = await admin_of(client)
    await signup(client, "zed-one")
    await signup(client, "zed-two")
    page = await (await client.get("/api/v1/users?search=ZED&limit=1", headers=admin.headers)).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    assert (await client.get("/api/v1/users/not-a-user", headers=admin.headers)).status == 404


async def test_security_events_reach_the_audit_log(client):
    admin, bob = await admin_of(client), await signup(client)
    await client.post("/api/v1/auth/login", json={"username": bob.username, "password": "wrong-password"})
    tok = await (await client.post("/api/v1/users/me/tokens", json={"name": "x"}, headers=bob.headers)).json()
    await client.delete(f"/api/v1/users/me/tokens/{tok['id']}", headers=bob.headers)
    await client.patch(f"/api/v1/users/{bob.id}", json={"is_admin": True}, headers=admin.headers)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "w"}, headers=admin.headers)).json())["id"]
    await client.post(f"/api/v1/workspaces/{ws}/members", json={"username": bob.username}, headers=admin.headers)
    await client.patch(f"/api/v1/workspaces/{ws}/members/{bob.id}", json={"role": "viewer"}, headers=admin.headers)
    page = await (await client.get("/api/v1/audit-events?limit=500", headers=admin.headers)).json()
    actions = [e["action"] for e in page["items"]]
    for expected in ("auth.login.succeeded", "auth.login.failed", "token.created", "token.revoked",
                     "admin.user.updated", "workspace.member.role_changed"):
        assert expected in actions, expected
    assert actions.index("workspace.member.role_changed") < actions.index("auth.login.failed")  # newest first
    only = await (await client.get("/api/v1/audit-events?action=token.created", headers=admin.headers)).json()
    assert only["total"] == 1 and only["items"][0]["actor_id"] == bob.id
    # The audit log never holds secrets.
    assert tok["token"] not in str(page) and bob.password not in str(page)


async def test_invite_only_registration(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, registration_policy="invite_only"), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False))
    await container.admin_service().create_admin("root", "root@example.com", "rootpassword")
    tokens = await (await client.post("/api/v1/auth/login", json={"username": "root", "password": "rootpassword"})).json()
    body = {"username": "newbie", "email": "n@example.com", "password": "longenough"}
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status == 403 and (await r.json())["error"]["code"] == "invite_required"
    code = (await (await client.post("/api/v1/invites", json={}, headers={"Authorization": f"Bearer {tokens['access_token']}"})).json())["code"]
    assert (await client.post("/api/v1/auth/register", json={**body, "invite_code": code})).status == 201
    r = await client.post("/api/v1/auth/register", json={**body, "username": "newbie2", "email": "n2@example.com", "invite_code": code})
    assert r.status == 403  # one use only


async def test_closed_registration(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, registration_policy="closed"), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False))
    r = await client.post("/api/v1/auth/register", json={"username": "newbie", "email": "n@example.com", "password": "longenough"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "registration_closed"


# --- hosts: agents are trusted with their own host only -------------------------------------


async def test_an_agent_reporting_another_hosts_gpu_over_http_steals_nothing(client, new_account):
    from dataclasses import replace

    from tests.e2e.test_environments_api import A100, add_host, created, get

    admin, user = await new_account(admin=True), await new_account()
    one = await add_host(client, admin, "gpu-1", f"2x{A100}")
    env = await created(client, user, "victim", gpu_count=1)
    await one.converge()
    env = await get(client, user, env["id"])
    assert env["status"] == "running" and env["host_id"] == one.host_id
    held = env["gpus"][0]["uuid"]

    two = await add_host(client, admin, "gpu-2", f"1x{A100}")
    two.gpus = two.gpus + [replace(next(g for g in one.gpus if g.uuid == held), index=1)]
    await two.beat()

    hosts = {h["name"]: h for h in (await (await client.get("/api/v1/hosts", headers=admin.headers)).json())["items"]}
    assert [(g["uuid"], g["allocated"]) for g in hosts["gpu-1"]["gpus"] if g["uuid"] == held] == [(held, True)]
    assert len(hosts["gpu-1"]["gpus"]) == 2 and hosts["gpu-1"]["conditions"] == []
    assert held not in {g["uuid"] for g in hosts["gpu-2"]["gpus"]}
    (condition,) = hosts["gpu-2"]["conditions"]
    assert condition["code"] == "gpu_uuid_conflict" and "gpu-1" in condition["message"]
    assert condition["details"] == {"uuid": held, "owner_host_id": one.host_id, "owner_host_name": "gpu-1"}
    audit = await (await client.get("/api/v1/audit-events?action=host.gpu_conflict", headers=admin.headers)).json()
    assert audit["total"] == 1 and audit["items"][0]["target_id"] == two.host_id

    # The victim still runs on its GPU; a new GPU environment still lands on host 1.
    assert [g["uuid"] for g in (await get(client, user, env["id"]))["gpus"]] == [held]
    assert (await client.post(f"/api/v1/hosts/{two.host_id}/cordon", headers=admin.headers)).status == 200
    second = await created(client, user, "second", gpu_count=1)
    assert second["status"] == "starting" and second["host_id"] == one.host_id and second["gpus"][0]["uuid"] != held
    await one.converge()
    assert (await get(client, user, second["id"]))["status"] == "running"


async def test_bad_agent_addresses_answer_422_and_store_nothing(client, new_account):
    from remotegpu.adapters.fleet.wire import report_to_dict
    from remotegpu.application.fleet.agent_protocol import HostReport

    admin = await new_account(admin=True)
    r = await client.post("/api/v1/hosts", json={"name": "remote", "address": "127.0.0.1"}, headers=admin.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_address"
    host = await (await client.post("/api/v1/hosts", json={"name": "remote"}, headers=admin.headers)).json()
    assert host["allow_loopback"] is False

    def report(address: str, private_address: str) -> dict:
        return report_to_dict(HostReport(gpus=[], cpu_cores=8, memory_gib=32, disk_gib=100, runtime="memory",
                                         runtime_healthy=True, address=address, private_address=private_address))

    for address, private in (("203.0.113.9", "127.0.0.1"), ("203.0.113.9\nHost *", "10.0.0.9"), ("169.254.169.254", "")):
        r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "remote",
                                                              "report": report(address, private)})
        assert r.status == 422, await r.text()
        body = await r.json()
        assert body["error"]["code"] == "invalid_address" and body["error"]["details"]["field"].startswith("report.")
    r = await client.post("/api/v1/agent/register", json={"join_token": host["join_token"], "name": "remote",
                                                          "report": report("203.0.113.9", "10.0.0.9")})
    assert r.status == 201, await r.text()  # the refused tries did not burn the join token
    auth = {"Authorization": f"Bearer {(await r.json())['agent_token']}"}
    r = await client.post("/api/v1/agent/heartbeat", json=report("ssh://evil", "10.0.0.9"), headers=auth)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_address"
    stored = await (await client.get(f"/api/v1/hosts/{host['id']}", headers=admin.headers)).json()
    assert (stored["address"], stored["private_address"]) == ("203.0.113.9", "10.0.0.9")

    allowed = await (await client.post("/api/v1/hosts", json={"name": "here", "allow_loopback": True},
                                       headers=admin.headers)).json()
    assert allowed["allow_loopback"] is True
    r = await client.post("/api/v1/agent/register", json={"join_token": allowed["join_token"], "name": "here",
                                                          "report": report("", "127.0.0.1")})
    assert r.status == 201, await r.text()


async def test_admin_rotates_revokes_and_removes_a_host_over_http(client, new_account):
    from tests.e2e.test_environments_api import ENVS, add_host, created, get

    admin, user = await new_account(admin=True), await new_account()
    agent = await add_host(client, admin)
    url = f"/api/v1/hosts/{agent.host_id}"
    env = await created(client, user, "on-host", gpu_count=1, disk_gib=70)
    await agent.converge()

    # Rotate: a new one-time join token, once; the old agent token is dead at once.
    r = await client.post(url + "/token", headers=admin.headers)
    assert r.status == 200
    join = (await r.json())["join_token"]
    r = await client.post("/api/v1/agent/heartbeat", json=agent.report(), headers={"Authorization": f"Bearer {agent.token}"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_agent_token"
    r = await client.post("/api/v1/agent/register", json={"join_token": join, "name": "gpu-1", "report": agent.report()})
    assert r.status == 201 and (await r.json())["host_id"] == agent.host_id  # same host: same environments
    agent.token = (await r.json())["agent_token"]
    assert (await agent.converge())["desired"][0]["env_id"] == env["id"]
    assert (await get(client, user, env["id"]))["status"] == "running"

    # Revoke: the agent is refused.
    assert (await client.delete(url + "/token", headers=admin.headers)).status == 204
    r = await client.post("/api/v1/agent/heartbeat", json=agent.report(), headers={"Authorization": f"Bearer {agent.token}"})
    assert r.status == 401

    # Remove: refused while online with environments, unless forced.
    r = await client.delete(url, headers=admin.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "host_not_empty"
    assert (await client.delete(url + "?force=maybe", headers=admin.headers)).status == 422
    assert (await client.delete(url + "?force=true", headers=admin.headers)).status == 204
    assert (await client.get(url, headers=admin.headers)).status == 404
    lost = await get(client, user, env["id"])
    assert lost["status"] == "lost" and lost["gpus"] == [] and lost["ports"] == []
    quota = await (await client.get(f"/api/v1/workspaces/{user.personal_workspace_id}/quota", headers=user.headers)).json()
    assert quota["usage"]["storage_gib"] == 70
    r = await client.delete(f"{ENVS}/{env['id']}", headers=user.headers)
    assert r.status == 202 and (await r.json())["status"] == "deleted"  # nothing left to ask: done at once
    quota = await (await client.get(f"/api/v1/workspaces/{user.personal_workspace_id}/quota", headers=user.headers)).json()
    assert quota["usage"]["storage_gib"] == 0
    for method, path in (("POST", url + "/token"), ("DELETE", url + "/token"), ("DELETE", url)):
        assert (await client.request(method, path, headers=admin.headers)).status == 404
    page = await (await client.get("/api/v1/audit-events?limit=200", headers=admin.headers)).json()
    actions = [e["action"] for e in page["items"]]
    for expected in ("admin.host.token_rotated", "admin.host.token_revoked", "admin.host.removed"):
        assert expected in actions
    assert join not in str(page) and agent.token not in str(page)  # secrets never logged
