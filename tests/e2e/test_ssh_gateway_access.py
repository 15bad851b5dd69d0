"""The SSH gateway's decisions (``GatewayAccess``) on the real application, in memory:
which key may log in as which name, the console's entry rule reused, revocation checks,
and who may read the audit record. (OpenSSH through the real gateway:
tests/integration/test_ssh_gateway.py.)"""

from __future__ import annotations

import asyncssh

from tests.conftest import _container_key
from tests.e2e.test_environments_api import admin_and_host, created
from tests.support.workspaces import join_workspace


def _key() -> tuple[str, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key.export_public_key("openssh").decode().strip(), key.get_fingerprint("sha256")


async def _register(client, account) -> tuple[str, str, str]:
    public, fingerprint = _key()
    r = await client.post("/api/v1/users/me/ssh-keys", json={"public_key": public, "name": "k"}, headers=account.headers)
    assert r.status == 201, await r.text()
    return public, fingerprint, (await r.json())["id"]


async def test_login_names_keys_and_the_entry_rule(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    owner, member, viewer, stranger = [await new_account() for _ in range(4)]
    team = await (await client.post("/api/v1/workspaces", json={"name": "lab"}, headers=owner.headers)).json()
    await join_workspace(client, owner, team["id"], member, "member")
    await join_workspace(client, owner, team["id"], viewer, "viewer")
    private = await created(client, owner, "solo", gpu_count=0, workspace_id=team["id"])
    shared = await created(client, owner, "shared", gpu_count=0, workspace_id=team["id"], shared=True)
    await agent.converge()
    keys = {a.username: await _register(client, a) for a in (owner, member, viewer, stranger)}
    access = client.server.app[_container_key()].ssh_gateway_access()

    async def login(name: str, who) -> str | None:
        public, fingerprint, _ = keys[who.username]
        found = await access.authenticate(name, public + " a comment", fingerprint)
        return None if found is None else f"{found.user.username}:{found.env_id}"

    assert await login(private["id"], owner) == f"{owner.username}:{private['id']}"
    assert await login(private["id"], member) is None  # not shared: the owner only
    assert await login(shared["id"], member) == f"{member.username}:{shared['id']}"
    assert await login(shared["id"], viewer) is None  # viewers see it but do not enter
    assert await login(shared["id"], stranger) is None
    assert await login("00000000-0000-4000-8000-000000000000", owner) is None  # no such environment
    # A jump login: the platform username and one of that user's own keys.
    assert await login(stranger.username, stranger) == f"{stranger.username}:None"
    assert await login(stranger.username, owner) is None
    assert await login("nobody-here", owner) is None

    # Where the relay goes is the web terminal's target: the host's address and the SSH port.
    target = await access.target(member.id, shared["id"])
    assert target.env_id == shared["id"] and target.ssh_port and target.ssh_host_key and target.ssh_client_key

    # Live sessions are re-checked: a deleted key, a disabled account, a removed member.
    public, _, key_id = keys[member.username]
    assert await access.still_allowed(member.id, shared["id"], public)
    r = await client.delete(f"/api/v1/users/me/ssh-keys/{key_id}", headers=member.headers)
    assert r.status == 204
    assert not await access.still_allowed(member.id, shared["id"], public)
    public, _, _ = keys[owner.username]
    assert await access.still_allowed(owner.id, private["id"], public)
    r = await client.post(f"/api/v1/environments/{private['id']}/stop", headers=owner.headers)
    assert r.status in (200, 202), await r.text()
    assert not await access.still_allowed(owner.id, private["id"], public)  # stopping ends the stay
    public, _, _ = keys[stranger.username]
    assert await access.still_allowed(stranger.id, None, public)
    r = await client.patch(f"/api/v1/users/{stranger.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status == 200
    assert not await access.still_allowed(stranger.id, None, public)
    assert await login(stranger.username, stranger) is None


async def test_the_audit_record_is_the_workspace_admins_and_404_elsewhere(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    owner, member, outsider = [await new_account() for _ in range(3)]
    team = await (await client.post("/api/v1/workspaces", json={"name": "lab"}, headers=owner.headers)).json()
    await join_workspace(client, owner, team["id"], member, "member")
    env = await created(client, owner, "box", gpu_count=0, workspace_id=team["id"])
    await agent.converge()
    access = client.server.app[_container_key()].ssh_gateway_access()
    record = await access.opened(owner.id, env["id"], "session", "198.51.100.4", "SHA256:abc")
    record.channels.append("shell")
    await access.closed(record, "revoked")

    r = await client.get(f"/api/v1/workspaces/{team['id']}/ssh-sessions", headers=owner.headers)
    page = await r.json()
    assert r.status == 200 and page["total"] == 1
    (item,) = page["items"]
    assert item["username"] == owner.username and item["environment_name"] == "box" and item["kind"] == "session"
    assert item["client_address"] == "198.51.100.4" and item["end_reason"] == "revoked" and item["channels"] == ["shell"]
    assert item["duration_seconds"] is not None and item["ended_at"] is not None
    r = await client.get(f"/api/v1/workspaces/{team['id']}/ssh-sessions", headers=member.headers)
    assert r.status == 403
    r = await client.get(f"/api/v1/workspaces/{team['id']}/ssh-sessions", headers=outsider.headers)
    assert r.status == 404  # another tenant's workspace does not exist for them
    r = await client.get(f"/api/v1/ssh-sessions?workspace_id={team['id']}", headers=outsider.headers)
    assert r.status == 404
    r = await client.get("/api/v1/ssh-sessions", headers=owner.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "admin_required"
    r = await client.get(f"/api/v1/ssh-sessions?environment_id={env['id']}", headers=admin.headers)
    assert r.status == 200 and (await r.json())["total"] == 1
    r = await client.get("/api/v1/ssh-sessions?limit=0", headers=admin.headers)
    assert r.status == 422
