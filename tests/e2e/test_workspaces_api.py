from __future__ import annotations

import asyncio

import aiohttp

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.e2e.test_environments_api import admin_and_host, create, created
from tests.support.workspaces import join_workspace

ME = "/api/v1/users/me/invitations"


async def invite(client, inviter, ws_id: str, **body):
    return await client.post(f"/api/v1/workspaces/{ws_id}/invitations", json=body, headers=inviter.headers)


async def error_of(r) -> dict:
    return (await r.json())["error"]


# --- membership needs consent -----------------------------------------------------------


async def test_an_invitation_makes_nobody_a_member_until_they_accept(client):
    owner, bob = await signup(client), await signup(client)
    ws = await (await client.post("/api/v1/workspaces", json={"name": "Vision Lab"}, headers=owner.headers)).json()
    assert ws["role"] == "owner" and ws["slug"] == "vision-lab" and ws["is_personal"] is False
    url = f"/api/v1/workspaces/{ws['id']}"
    r = await invite(client, owner, ws["id"], username=bob.username, role="member")
    assert r.status == 201, await r.text()
    sent = await r.json()
    assert (sent["username"], sent["role"], sent["status"], sent["invited_by"]) == (bob.username, "member", "pending", owner.username)
    assert sent["workspace_name"] == "Vision Lab" and sent["expires_at"] > sent["created_at"]
    # Invited is not a member: the workspace is still invisible to Bob.
    assert (await client.get(url, headers=bob.headers)).status == 404
    assert ws["id"] not in [w["id"] for w in (await (await client.get("/api/v1/workspaces", headers=bob.headers)).json())["items"]]
    assert [m["username"] for m in (await (await client.get(url + "/members", headers=owner.headers)).json())["items"]] == [owner.username]
    # Both sides see the pending invitation.
    pending = await (await client.get(url + "/invitations", headers=owner.headers)).json()
    assert [i["id"] for i in pending["items"]] == [sent["id"]] and pending["total"] == 1
    mine = await (await client.get(ME, headers=bob.headers)).json()
    assert [(i["id"], i["workspace_name"], i["invited_by"]) for i in mine["items"]] == [(sent["id"], "Vision Lab", owner.username)]
    # Bad or repeated invitations.
    r = await invite(client, owner, ws["id"], username=bob.username)
    assert r.status == 409 and (await error_of(r))["code"] == "already_invited"
    r = await invite(client, owner, ws["id"], username="ghost-user")
    assert r.status == 404 and (await error_of(r))["code"] == "user_not_found"
    for body in ({"username": "x", "role": "emperor"}, {"role": "member"}, {"username": bob.username, "email": "a@b.c"}):
        r = await invite(client, owner, ws["id"], **body)
        assert r.status == 422 and "error" in await r.json(), body
    # Bob accepts: now a member with the invited role, and the invitation is closed.
    r = await client.post(f"{ME}/{sent['id']}/accept", headers=bob.headers)
    assert r.status == 200, await r.text()
    assert (await r.json())["id"] == ws["id"] and (await r.json())["role"] == "member"
    mine = await (await client.get("/api/v1/workspaces", headers=bob.headers)).json()
    assert {w["id"]: w["role"] for w in mine["items"]}[ws["id"]] == "member"
    assert (await (await client.get(ME, headers=bob.headers)).json())["total"] == 0
    assert (await (await client.get(url + "/invitations", headers=owner.headers)).json())["total"] == 0
    r = await client.post(f"{ME}/{sent['id']}/accept", headers=bob.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "invitation_closed"
    r = await invite(client, owner, ws["id"], username=bob.username)
    assert r.status == 409 and (await error_of(r))["code"] == "already_member"
    # The rest of membership works as before.
    r = await client.patch(url + f"/members/{bob.id}", json={"role": "admin"}, headers=owner.headers)
    assert r.status == 200 and (await r.json())["role"] == "admin"
    assert (await client.delete(url + f"/members/{bob.id}", headers=bob.headers)).status == 204  # Bob leaves
    assert (await client.get(url, headers=bob.headers)).status == 404


async def test_invite_by_email_decline_and_revoke(client):
    owner, bob = await signup(client), await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    r = await invite(client, owner, ws, email=f"  {bob.username.upper()}@EXAMPLE.com ", role="viewer")
    assert r.status == 201, await r.text()
    first = await r.json()
    assert first["user_id"] == bob.id and first["role"] == "viewer"
    assert (await client.post(f"{ME}/{first['id']}/decline", headers=bob.headers)).status == 204
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bob.headers)).status == 404  # declining joins nothing
    r = await client.post(f"{ME}/{first['id']}/accept", headers=bob.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "invitation_closed"
    r = await invite(client, owner, ws, email="nobody@example.com")
    assert r.status == 404 and (await error_of(r))["details"]["field"] == "email"
    # Declined, so it can be sent again; then the owner revokes it before Bob answers.
    second = await (await invite(client, owner, ws, username=bob.username)).json()
    assert (await client.delete(f"/api/v1/workspaces/{ws}/invitations/{second['id']}", headers=owner.headers)).status == 204
    assert (await (await client.get(ME, headers=bob.headers)).json())["total"] == 0
    r = await client.post(f"{ME}/{second['id']}/accept", headers=bob.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "invitation_closed"
    r = await client.delete(f"/api/v1/workspaces/{ws}/invitations/{second['id']}", headers=owner.headers)
    assert r.status == 409
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bob.headers)).status == 404


async def test_someone_elses_invitation_answers_404_everywhere(client):
    owner, bob, mallory = await signup(client), await signup(client), await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    theirs = (await (await client.post("/api/v1/workspaces", json={"name": "m"}, headers=mallory.headers)).json())["id"]
    sent = await (await invite(client, owner, ws, username=bob.username)).json()
    for action in ("accept", "decline"):
        r = await client.post(f"{ME}/{sent['id']}/{action}", headers=mallory.headers)
        assert r.status == 404 and (await error_of(r))["code"] == "not_found"
        assert (await client.post(f"{ME}/no-such-invitation/{action}", headers=bob.headers)).status == 404
    assert (await (await client.get(ME, headers=mallory.headers)).json())["items"] == []
    assert (await client.get(f"/api/v1/workspaces/{ws}/invitations", headers=mallory.headers)).status == 404
    assert (await client.delete(f"/api/v1/workspaces/{ws}/invitations/{sent['id']}", headers=mallory.headers)).status == 404
    # Through her own workspace's URL the invitation of another workspace does not exist either.
    assert (await client.delete(f"/api/v1/workspaces/{theirs}/invitations/{sent['id']}", headers=mallory.headers)).status == 404
    assert (await (await client.get(ME, headers=bob.headers)).json())["total"] == 1  # untouched


async def test_owners_and_admins_cannot_add_members_directly_platform_admins_can_and_it_is_audited(client):
    owner, bob = await signup(client), await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    r = await client.post(f"/api/v1/workspaces/{ws}/members", json={"username": bob.username}, headers=owner.headers)
    assert r.status == 403 and (await error_of(r))["code"] == "invitation_required"
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bob.headers)).status == 404
    r = await client.post(f"/api/v1/workspaces/{ws}/members", json={"username": bob.username, "role": "viewer"}, headers=admin.headers)
    assert r.status == 201, await r.text()
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bob.headers)).status == 200
    events = await (await client.get("/api/v1/audit-events?action=workspace.member.added", headers=admin.headers)).json()
    assert [(e["actor_id"], e["details"]["user_id"], e["details"]["direct"]) for e in events["items"]] == [(admin.id, bob.id, True)]


async def test_accepting_is_audited_with_who_invited(client):
    owner, bob = await signup(client), await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    await join_workspace(client, owner, ws, bob, "viewer")
    events = await (await client.get("/api/v1/audit-events?limit=100", headers=admin.headers)).json()
    actions = [e["action"] for e in events["items"]]
    assert "workspace.invitation.created" in actions and "workspace.invitation.accepted" in actions
    added = next(e for e in events["items"] if e["action"] == "workspace.member.added")
    assert added["actor_id"] == bob.id and added["details"]["invited_by"] == owner.id


async def test_workspace_admins_invite_members_but_not_owners_or_admins(client):
    owner, ws_admin, carol, dave = [await signup(client) for _ in range(4)]
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    await join_workspace(client, owner, ws, ws_admin, "admin")
    for role in ("owner", "admin"):
        r = await invite(client, ws_admin, ws, username=carol.username, role=role)
        assert r.status == 403, role
    assert (await invite(client, ws_admin, ws, username=carol.username, role="member")).status == 201
    # An invitation carries its inviter's authority: gone when they are.
    sent = await (await invite(client, ws_admin, ws, username=dave.username, role="member")).json()
    assert (await client.delete(f"/api/v1/workspaces/{ws}/members/{ws_admin.id}", headers=owner.headers)).status == 204
    r = await client.post(f"{ME}/{sent['id']}/accept", headers=dave.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "invitation_stale"
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=dave.headers)).status == 404


async def test_last_owner_cannot_leave_or_be_demoted(client):
    owner = await signup(client)
    ws = await (await client.post("/api/v1/workspaces", json={"name": "solo"}, headers=owner.headers)).json()
    url = f"/api/v1/workspaces/{ws['id']}/members/{owner.id}"
    r = await client.delete(url, headers=owner.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_owner"
    r = await client.patch(url, json={"role": "admin"}, headers=owner.headers)
    assert r.status == 409


async def test_personal_workspace_cannot_be_deleted_or_shared(client):
    owner, bob = await signup(client), await signup(client)
    url = f"/api/v1/workspaces/{owner.personal_workspace_id}"
    assert (await client.delete(url, headers=owner.headers)).status == 409
    r = await invite(client, owner, owner.personal_workspace_id, username=bob.username)
    assert r.status == 409 and (await error_of(r))["code"] == "personal_workspace"


# --- quotas cannot be escaped -------------------------------------------------------------


async def test_every_workspace_has_the_default_quota_until_a_platform_admin_sets_one(client):
    owner = await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    team = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    for ws in (owner.personal_workspace_id, team):
        q = await (await client.get(f"/api/v1/workspaces/{ws}/quota", headers=owner.headers)).json()
        assert (q["max_gpus"], q["max_environments"], q["max_storage_gib"], q["is_default"]) == (8, 10, 500, True)
        assert q["usage"] == {"gpus": 0, "environments": 0, "cpu_cores": 0, "memory_gib": 0, "storage_gib": 0}
    url = f"/api/v1/workspaces/{team}/quota"
    r = await client.put(url, json={"max_gpus": 2, "max_environments": 3, "max_memory_gib": 64}, headers=admin.headers)
    assert r.status == 200
    q = await (await client.get(url, headers=owner.headers)).json()
    assert (q["max_gpus"], q["max_environments"], q["max_cpu_cores"], q["max_memory_gib"], q["is_default"]) == (2, 3, None, 64, False)
    r = await client.put(url, json={"max_gpus": -1}, headers=admin.headers)
    assert r.status == 422
    assert (await (await client.get(url, headers=owner.headers)).json())["max_gpus"] == 2  # the bad request changed nothing
    assert (await client.delete(url, headers=owner.headers)).status == 403
    r = await client.delete(url, headers=admin.headers)
    assert r.status == 200 and (await r.json())["is_default"] is True and (await r.json())["max_gpus"] == 8


async def test_user_caps_are_read_by_the_user_and_set_by_platform_admins(client):
    alice, bob = await signup(client), await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    url = f"/api/v1/users/{alice.id}/quota"
    q = await (await client.get(url, headers=alice.headers)).json()
    assert (q["max_gpus"], q["max_workspaces"], q["owned_workspaces"], q["is_default"]) == (8, 5, 0, True)
    assert (await client.get(url, headers=bob.headers)).status == 403
    assert (await (await client.get("/api/v1/users/me/quota", headers=alice.headers)).json())["user_id"] == alice.id
    assert (await client.put(url, json={"max_gpus": 1}, headers=alice.headers)).status == 403
    r = await client.put(url, json={"max_gpus": 1, "max_storage_gib": 100, "max_workspaces": 2}, headers=admin.headers)
    assert r.status == 200, await r.text()
    q = await (await client.get(url, headers=alice.headers)).json()
    assert (q["max_gpus"], q["max_storage_gib"], q["max_environments"], q["max_workspaces"], q["is_default"]) == (1, 100, None, 2, False)
    assert q["username"] == alice.username
    assert (await client.put(url, json={"max_workspaces": -1}, headers=admin.headers)).status == 422
    assert (await client.put(url, json={"max_gpu": 1}, headers=admin.headers)).status == 422  # typo: unknown field
    assert (await client.get("/api/v1/users/no-such-user/quota", headers=admin.headers)).status == 404
    assert (await client.put("/api/v1/users/no-such-user/quota", json={}, headers=admin.headers)).status == 404
    r = await client.delete(url, headers=admin.headers)
    assert r.status == 200 and (await r.json())["is_default"] is True


async def test_a_capped_user_gains_nothing_by_creating_another_workspace(client, new_account):
    """The issue's attack: a capped user made a workspace, which had no quota, and got GPUs and 4096 GiB."""
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    await client.put(f"/api/v1/workspaces/{user.personal_workspace_id}/quota", json={"max_gpus": 1}, headers=admin.headers)
    await client.put(f"/api/v1/users/{user.id}/quota", json={"max_gpus": 1, "max_storage_gib": 200}, headers=admin.headers)
    await created(client, user, "mine", gpu_count=1)
    team = (await (await client.post("/api/v1/workspaces", json={"name": "escape"}, headers=user.headers)).json())["id"]
    r = await create(client, user, "more", gpu_count=1, workspace_id=team)
    assert r.status == 409
    error = await error_of(r)
    assert error["code"] == "quota_exceeded" and error["details"]["scope"] == "user"
    assert error["details"]["user_id"] == user.id and error["details"]["username"] == user.username
    assert error["details"]["violations"] == [{"resource": "gpus", "limit": 1, "used": 1, "requested": 1}]
    # A huge disk in the new workspace passes neither the workspace's default nor the user's cap.
    r = await create(client, user, "disk", gpu_count=0, workspace_id=team, disk_gib=4096)
    assert r.status == 409 and (await error_of(r))["details"]["scope"] == "workspace"
    r = await create(client, user, "disk", gpu_count=0, workspace_id=team, disk_gib=200)
    assert r.status == 409 and (await error_of(r))["details"]["violations"][0]["resource"] == "storage_gib"
    page = await (await client.get("/api/v1/environments", headers=user.headers)).json()
    assert [e["name"] for e in page["items"]] == ["mine"]
    # The cap follows ownership: a member's environment counts against the workspace's owner.
    owner = await new_account()
    shared = (await (await client.post("/api/v1/workspaces", json={"name": "shared"}, headers=owner.headers)).json())["id"]
    await join_workspace(client, owner, shared, user, "member")
    await created(client, user, "in-owners-ws", gpu_count=1, workspace_id=shared)
    q = await (await client.get(f"/api/v1/users/{owner.id}/quota", headers=owner.headers)).json()
    assert q["usage"]["gpus"] == 1 and q["owned_workspaces"] == 1


async def test_starting_again_is_checked_against_the_owners_cap(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    one = await created(client, user, "one", gpu_count=1)
    await agent.converge()
    assert (await client.post(f"/api/v1/environments/{one['id']}/stop", headers=user.headers)).status == 202
    await agent.converge()
    team = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=user.headers)).json())["id"]
    await created(client, user, "two", gpu_count=1, workspace_id=team)
    await client.put(f"/api/v1/users/{user.id}/quota", json={"max_gpus": 1}, headers=admin.headers)
    r = await client.post(f"/api/v1/environments/{one['id']}/start", json={}, headers=user.headers)
    assert r.status == 409 and (await error_of(r))["details"]["scope"] == "user"


async def test_owned_workspaces_are_capped_also_under_concurrent_creates(client):
    user = await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    results = await asyncio.gather(
        *(client.post("/api/v1/workspaces", json={"name": f"w{i}"}, headers=user.headers) for i in range(8))
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 5 + [409] * 3
    refused = await error_of(next(r for r in results if r.status == 409))
    assert refused["code"] == "quota_exceeded"
    assert refused["details"]["violations"] == [{"resource": "workspaces", "limit": 5, "used": 5, "requested": 1}]
    page = await (await client.get("/api/v1/workspaces", headers=user.headers)).json()
    assert page["total"] == 6  # five team workspaces and the personal one
    # Deleting one frees a place; an admin can raise the limit.
    victim = next(w for w in page["items"] if not w["is_personal"])
    assert (await client.delete(f"/api/v1/workspaces/{victim['id']}", headers=user.headers)).status == 204
    assert (await client.post("/api/v1/workspaces", json={"name": "again"}, headers=user.headers)).status == 201
    assert (await client.post("/api/v1/workspaces", json={"name": "over"}, headers=user.headers)).status == 409
    await client.put(f"/api/v1/users/{user.id}/quota", json={"max_workspaces": 6}, headers=admin.headers)
    assert (await client.post("/api/v1/workspaces", json={"name": "over"}, headers=user.headers)).status == 201


async def test_becoming_owner_through_an_invitation_counts_towards_max_workspaces(client):
    alice, bob = await signup(client), await signup(client)
    admin = await signup(client, admin_container=client.server.app[_key()])
    await client.put(f"/api/v1/users/{bob.id}/quota", json={"max_workspaces": 0}, headers=admin.headers)
    assert (await client.post("/api/v1/workspaces", json={"name": "b"}, headers=bob.headers)).status == 409
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "a"}, headers=alice.headers)).json())["id"]
    sent = await (await invite(client, alice, ws, username=bob.username, role="owner")).json()
    r = await client.post(f"{ME}/{sent['id']}/accept", headers=bob.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "quota_exceeded"
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bob.headers)).status == 404
    # Joining as a plain member owns nothing and is fine.
    assert (await client.delete(f"/api/v1/workspaces/{ws}/invitations/{sent['id']}", headers=alice.headers)).status == 204
    await join_workspace(client, alice, ws, bob, "member")
    # Promoting him to owner is refused for the same reason.
    r = await client.patch(f"/api/v1/workspaces/{ws}/members/{bob.id}", json={"role": "owner"}, headers=alice.headers)
    assert r.status == 409 and (await error_of(r))["code"] == "quota_exceeded"


async def test_workspace_creation_can_be_restricted_to_admins(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, workspace_creation="admins"), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    user = await signup(client)
    admin = await signup(client, admin_container=container)
    r = await client.post("/api/v1/workspaces", json={"name": "mine"}, headers=user.headers)
    assert r.status == 403 and (await error_of(r))["code"] == "workspace_creation_restricted"
    assert (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=admin.headers)).status == 201
    # Registration still gives everyone their personal workspace.
    assert [w["is_personal"] for w in (await (await client.get("/api/v1/workspaces", headers=user.headers)).json())["items"]] == [True]


# --- listing ------------------------------------------------------------------------------


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
