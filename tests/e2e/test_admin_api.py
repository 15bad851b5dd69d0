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
