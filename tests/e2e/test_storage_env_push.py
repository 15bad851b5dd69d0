"""Pushing from inside an environment, and where a version came from (issue 14).

The platform puts REMOTEGPU_TOKEN into each environment's container: storage API only,
the environment's workspace only, valid while that run of the environment lasts, never
stored nor returned. Versions record their source (an environment or a training job)."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from remotegpu.domain.environments.models import EnvStatus
from remotegpu.entrypoints import storage_cli
from tests.conftest import signup
from tests.support.storage import push
from tests.support.workspaces import join_workspace


@pytest.fixture
def container_of(client):
    from remotegpu.entrypoints.http.keys import CONTAINER

    return client.server.app[CONTAINER]


async def _environment(client, account, name="nb") -> dict:
    r = await client.post("/api/v1/environments", json={"workspace_id": account.personal_workspace_id, "name": name,
                                                       "cpu_cores": 1, "memory_gib": 1}, headers=account.headers)
    assert r.status == 202, await r.text()
    return await r.json()


async def _set_status(container, env_id: str, status: EnvStatus) -> None:
    """What the agent's reports would do (no agent runs in these tests)."""
    async with container.storage_uow() as uow:
        env = await uow.environments.get(env_id)
        env.status = status
        await uow.environments.update(env)
        await uow.commit()


async def test_an_environments_token_pushes_to_its_workspace_only_and_only_while_it_runs(client, container_of, tmp_path):
    me, other = await signup(client), await signup(client)
    ws = me.personal_workspace_id
    env = await _environment(client, me)
    async with container_of.storage_uow() as uow:
        stored = await uow.environments.get(env["id"])
    # The container's variables carry it (derived, the same on every beat); the API never shows it.
    variables = container_of.agent_service()._storage_variables(stored)
    token = variables["REMOTEGPU_TOKEN"]
    assert token.startswith("rgpu_env_") and variables["REMOTEGPU_WORKSPACE_ID"] == ws
    assert container_of.agent_service()._storage_variables(stored)["REMOTEGPU_TOKEN"] == token
    r = await client.get(f"/api/v1/environments/{env['id']}", headers=me.headers)
    assert token not in await r.text()
    bearer = {"Authorization": f"Bearer {token}"}

    # Queued (not started yet): refused.
    r = await client.post("/api/v1/datasets", json={"workspace_id": ws, "name": "out"}, headers=bearer)
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_token"
    await _set_status(container_of, env["id"], EnvStatus.RUNNING)

    # The CLI inside the container: REMOTEGPU_TOKEN / REMOTEGPU_WORKSPACE_ID, nothing else.
    data = tmp_path / "out"
    data.mkdir()
    (data / "weights.bin").write_bytes(b"w" * 1000)
    storage_cli.STATE_DIR = tmp_path / "state"
    async with aiohttp.ClientSession() as session:
        api = storage_cli.Api(str(client.make_url("")), token, session)
        import os

        os.environ["REMOTEGPU_WORKSPACE_ID"] = ws  # as in the container
        try:
            ws_seen = await api.workspace(None)
        finally:
            del os.environ["REMOTEGPU_WORKSPACE_ID"]
        assert ws_seen == ws
        await api.call("POST", "/api/v1/models", json_body={"workspace_id": ws_seen, "name": "trained"})
        repo = await api.repository("model", ws_seen, "trained")
        version = await storage_cli.push(api, "model", repo, data, quiet=True)
    assert version["source"] == {"kind": "environment", "id": env["id"]}
    r = await client.get(f"/api/v1/models/{repo['id']}/versions/1", headers=me.headers)
    assert (await r.json())["source"] == {"kind": "environment", "id": env["id"]}

    # Storage only: not environments, not the account's tokens, not the workspace list.
    for method, path in (("GET", "/api/v1/environments"), ("GET", "/api/v1/users/me/api-tokens"),
                         ("GET", "/api/v1/workspaces"), ("POST", "/api/v1/storage/collect")):
        r = await client.request(method, path, headers=bearer)
        assert r.status == 403 and (await r.json())["error"]["code"] == "token_scope", path
    # Its own workspace only: another workspace the owner belongs to is unknown to it.
    team = (await (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=other.headers)).json())["id"]
    await join_workspace(client, other, team, me)
    theirs = await (await client.post("/api/v1/datasets", json={"workspace_id": team, "name": "theirs"}, headers=other.headers)).json()
    assert (await client.get(f"/api/v1/datasets/{theirs['id']}", headers=me.headers)).status == 200
    assert (await client.get(f"/api/v1/datasets/{theirs['id']}", headers=bearer)).status == 404
    r = await client.post("/api/v1/datasets", json={"workspace_id": team, "name": "x"}, headers=bearer)
    assert r.status == 404
    r = await client.get(f"/api/v1/datasets?workspace_id={team}", headers=bearer)
    assert r.status == 404
    # Never public by an environment, even an admin's.
    r = await client.patch(f"/api/v1/models/{repo['id']}", json={"visibility": "public"}, headers=bearer)
    assert r.status == 403

    # A forged token, and the token once the environment stopped: refused.
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    r = await client.get(f"/api/v1/models/{repo['id']}", headers={"Authorization": f"Bearer {forged}"})
    assert r.status == 401
    await _set_status(container_of, env["id"], EnvStatus.STOPPED)
    r = await client.get(f"/api/v1/models/{repo['id']}", headers=bearer)
    assert r.status == 401


async def test_a_version_records_the_environment_or_job_that_made_it(client, container_of):
    me, stranger = await signup(client), await signup(client)
    mine, theirs = await _environment(client, me), await _environment(client, stranger, "theirs")
    r = await client.post("/api/v1/models", json={"workspace_id": me.personal_workspace_id, "name": "m"}, headers=me.headers)
    model = await r.json()
    _, version = await push(client, me.headers, "model", model["id"], {"a": b"a"},
                            source={"kind": "environment", "id": mine["id"]})
    assert version["source"] == {"kind": "environment", "id": mine["id"]}
    r = await client.get(f"/api/v1/models/{model['id']}/versions", headers=me.headers)
    assert [v["source"] for v in (await r.json())["items"]] == [{"kind": "environment", "id": mine["id"]}]
    _, plain = await push(client, me.headers, "model", model["id"], {"b": b"b"})
    assert plain["source"] is None  # uploaded by a person
    # Another tenant's environment, an unknown job, a wrong kind: refused.
    for source, status in (({"kind": "environment", "id": theirs["id"]}, 422), ({"kind": "job", "id": "nope"}, 422),
                           ({"kind": "host", "id": "x"}, 422)):
        r = await client.post(f"/api/v1/models/{model['id']}/uploads", headers=me.headers, json={
            "files": [{"path": "c", "size": 1, "sha256": hashlib.sha256(b"c").hexdigest()}], "source": source})
        assert r.status == status, await r.text()
        assert (await r.json())["error"]["code"] in ("source_not_found", "validation_error", "invalid_input")


async def test_the_shared_disk_counts_against_storage_and_reaches_the_spec(client, container_of):
    me = await signup(client)
    admin = await signup(client, admin_container=container_of)
    ws = me.personal_workspace_id
    r = await client.get(f"/api/v1/workspaces/{ws}/shared-disk", headers=me.headers)
    assert await r.json() == {"workspace_id": ws, "enabled": False, "size_gib": None, "mount_path": "/root/shared",
                              "per_host": True, "updated_at": None}
    env = await _environment(client, me)  # its own disk counts too (disk_gib)
    r = await client.put(f"/api/v1/workspaces/{ws}/quota", json={"max_storage_gib": env["disk_gib"] + 10}, headers=admin.headers)
    assert r.status == 200, await r.text()
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 11}, headers=me.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "quota_exceeded"
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 0}, headers=me.headers)
    assert r.status == 422
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 10}, headers=me.headers)
    assert r.status == 200 and (await r.json())["size_gib"] == 10
    # Full now: another environment's disk no longer fits either (the shared disk counts at create).
    r = await client.post("/api/v1/environments", json={"workspace_id": ws, "name": "more", "cpu_cores": 1, "memory_gib": 1,
                                                        "disk_gib": 1}, headers=me.headers)
    assert r.status == 409 and [v["resource"] for v in (await r.json())["error"]["details"]["violations"]] == ["storage_gib"]
    # Resized smaller, it fits again.
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 9}, headers=me.headers)
    assert r.status == 200
    r = await client.post("/api/v1/environments", json={"workspace_id": ws, "name": "more", "cpu_cores": 1, "memory_gib": 1,
                                                        "disk_gib": 1}, headers=me.headers)
    assert r.status == 202, await r.text()
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 10}, headers=me.headers)
    assert r.status == 409  # the new environment's disk holds that GiB now
    r = await client.put(f"/api/v1/workspaces/{ws}/shared-disk", json={"size_gib": 9}, headers=me.headers)
    assert r.status == 200
    # Full now: a dataset version that adds bytes no longer fits.
    r = await client.post("/api/v1/datasets", json={"workspace_id": ws, "name": "d"}, headers=me.headers)
    ds = await r.json()
    r = await client.post(f"/api/v1/datasets/{ds['id']}/uploads", headers=me.headers,
                          json={"files": [{"path": "a", "size": 10, "sha256": "a" * 64}]})
    assert r.status == 409 and (await r.json())["error"]["code"] == "quota_exceeded"
    # The agent's spec: the size, so the runtime mounts the workspace's volume at /root/shared.
    async with container_of.storage_uow() as uow:
        stored = await uow.environments.get(env["id"])
    assert await container_of.agent_service()._shared_disk(stored) == 9
    assert (await client.delete(f"/api/v1/workspaces/{ws}/shared-disk", headers=me.headers)).status == 204
    assert await container_of.agent_service()._shared_disk(stored) is None
