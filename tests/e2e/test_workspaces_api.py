from __future__ import annotations

from tests.conftest import signup


async def test_team_workspace_membership_lifecycle(client):
    owner, bob = await signup(client), await signup(client)
    ws = await (await client.post("/api/v1/workspaces", json={"name": "Vision Lab"}, headers=owner.headers)).json()
    assert ws["role"] == "owner" and ws["slug"] == "vision-lab" and ws["is_personal"] is False
    url = f"/api/v1/workspaces/{ws['id']}"
    r = await client.post(url + "/members", json={"username": bob.username, "role": "member"}, headers=owner.headers)
    assert r.status == 201
    r = await client.post(url + "/members", json={"username": bob.username}, headers=owner.headers)
    assert r.status == 409
    r = await client.post(url + "/members", json={"username": "ghost-user"}, headers=owner.headers)
    assert r.status == 404
    r = await client.post(url + "/members", json={"username": "x", "role": "emperor"}, headers=owner.headers)
    assert r.status == 422
    mine = await (await client.get("/api/v1/workspaces", headers=bob.headers)).json()
    assert {w["id"]: w["role"] for w in mine["items"]}[ws["id"]] == "member"
    r = await client.patch(url + f"/members/{bob.id}", json={"role": "admin"}, headers=owner.headers)
    assert r.status == 200 and (await r.json())["role"] == "admin"
    # Bob leaves on his own.
    assert (await client.delete(url + f"/members/{bob.id}", headers=bob.headers)).status == 204
    assert (await client.get(url, headers=bob.headers)).status == 404


async def test_last_owner_cannot_leave_or_be_demoted(client):
    owner = await signup(client)
    ws = await (await client.post("/api/v1/workspaces", json={"name": "solo"}, headers=owner.headers)).json()
    url = f"/api/v1/workspaces/{ws['id']}/members/{owner.id}"
    r = await client.delete(url, headers=owner.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_owner"
    r = await client.patch(url, json={"role": "admin"}, headers=owner.headers)
    assert r.status == 409


async def test_workspace_admin_cannot_create_owners(client):
    owner, admin, carol = await signup(client), await signup(client), await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    await client.post(f"/api/v1/workspaces/{ws}/members", json={"username": admin.username, "role": "admin"}, headers=owner.headers)
    r = await client.post(f"/api/v1/workspaces/{ws}/members", json={"username": carol.username, "role": "owner"}, headers=admin.headers)
    assert r.status == 403


async def test_personal_workspace_cannot_be_deleted_or_shared(client):
    owner, bob = await signup(client), await signup(client)
    url = f"/api/v1/workspaces/{owner.personal_workspace_id}"
    assert (await client.delete(url, headers=owner.headers)).status == 409
    r = await client.post(url + "/members", json={"username": bob.username}, headers=owner.headers)
    assert r.status == 409


async def test_quota_is_unlimited_by_default_and_set_by_platform_admins(client):
    owner = await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    url = f"/api/v1/workspaces/{owner.personal_workspace_id}/quota"
    q = await (await client.get(url, headers=owner.headers)).json()
    assert q["max_gpus"] is None and q["usage"] == {"gpus": 0, "environments": 0, "cpu_cores": 0, "memory_gib": 0, "storage_gib": 0}
    r = await client.put(url, json={"max_gpus": 2, "max_environments": 3, "max_memory_gib": 64}, headers=admin.headers)
    assert r.status == 200
    q = await (await client.get(url, headers=owner.headers)).json()
    assert (q["max_gpus"], q["max_environments"], q["max_cpu_cores"], q["max_memory_gib"]) == (2, 3, None, 64)
    r = await client.put(url, json={"max_gpus": -1}, headers=admin.headers)
    assert r.status == 422
    q = await (await client.get(url, headers=owner.headers)).json()
    assert q["max_gpus"] == 2  # the bad request changed nothing


async def test_pagination_of_workspaces(client):
    owner = await signup(client)
    for i in range(5):
        await client.post("/api/v1/workspaces", json={"name": f"ws {i}"}, headers=owner.headers)
    page = await (await client.get("/api/v1/workspaces?limit=2&offset=1", headers=owner.headers)).json()
    assert page["total"] == 6 and len(page["items"]) == 2
    assert (await client.get("/api/v1/workspaces?limit=0", headers=owner.headers)).status == 422
    assert (await client.get("/api/v1/workspaces?limit=abc", headers=owner.headers)).status == 422



async def test_platform_admins_list_every_workspace_with_search_and_pages(client):
    owner, stranger = await signup(client), await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    team = await (await client.post("/api/v1/workspaces", json={"name": "Protein Folding"}, headers=owner.headers)).json()
    r = await client.get("/api/v1/workspaces?all=true&limit=500", headers=admin.headers)
    assert r.status == 200
    page = await r.json()
    by_id = {w["id"]: w for w in page["items"]}
    # The admin sees other people's workspaces (not a member: role null) as well as their own.
    assert by_id[team["id"]]["role"] is None and by_id[owner.personal_workspace_id]["is_personal"] is True
    assert by_id[admin.personal_workspace_id]["role"] == "owner"
    assert page["total"] == len(page["items"]) >= 4
    found = await (await client.get("/api/v1/workspaces?all=true&search=PROTEIN", headers=admin.headers)).json()
    assert [w["id"] for w in found["items"]] == [team["id"]] and found["total"] == 1
    paged = await (await client.get("/api/v1/workspaces?all=true&limit=1&offset=1", headers=admin.headers)).json()
    assert len(paged["items"]) == 1 and paged["total"] == page["total"]
    # Everyone else gets 403 in the error format; without all=true they see only their own.
    r = await client.get("/api/v1/workspaces?all=true", headers=stranger.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "admin_required"
    mine = await (await client.get("/api/v1/workspaces?all=false", headers=stranger.headers)).json()
    assert [w["id"] for w in mine["items"]] == [stranger.personal_workspace_id]
    assert (await client.get("/api/v1/workspaces?all=maybe", headers=admin.headers)).status == 422


def _key():
    from remotegpu.entrypoints.http.keys import CONTAINER

    return CONTAINER
