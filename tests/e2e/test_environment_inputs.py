"""What users may put into an environment, through the API: names (DNS labels, never a
line of someone's ~/.ssh/config), environment variables (reserved ones refused, secret
ones write-only and sealed at rest, plain values only to those who operate it), images
(allowed patterns only), and JSON bodies of any route (bounded depth and size)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import aiohttp
import pytest

from remotegpu.domain.workspaces.models import Membership, Role
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.keys import CONTAINER
from tests.conftest import make_settings, signup
from tests.e2e.test_environments_api import ENVS, admin_and_host, create, created, get

INJECTION = "x\n    ProxyCommand touch /tmp/remotegpu-pwned"


async def add_member(client, workspace_id: str, account, role: Role) -> None:
    """Straight into the store: how someone becomes a member is another test's business."""
    container = client.server.app[CONTAINER]
    async with container.uow() as uow:
        await uow.workspaces.add_member(Membership(workspace_id, account.id, role, datetime.now(timezone.utc)))
        await uow.commit()


# --- names ------------------------------------------------------------------------------------


async def test_environment_names_are_dns_labels_and_anything_else_is_422(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    for bad in (INJECTION, "Train", "my env", "a_b", "a.b", "-a", "a-", "a" * 64, "ünïcode", "a\tb", "ok\n", " padded"):
        r = await create(client, user, bad)
        assert r.status == 422, (bad, r.status, await r.text())
        body = await r.json()
        if bad.strip():  # (pydantic refuses nothing here: the domain rule answers)
            assert body["error"]["code"] == "invalid_name", body
            assert "lowercase letters, digits or '-'" in body["error"]["message"]
    assert (await (await client.get(ENVS, headers=user.headers)).json())["total"] == 0
    for good in ("a", "train-1", "0x", "a" * 63):
        env = await created(client, user, good, gpu_count=0)
        assert env["name"] == good


async def test_ssh_config_block_is_built_from_validated_parts_only(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    env = await created(client, user, "train-1", gpu_count=0)
    await agent.converge()
    access = await (await client.get(f"{ENVS}/{env['id']}/access", headers=user.headers)).json()
    port = access["ssh"]["port"]
    assert access["ssh"]["config"].splitlines() == [
        "Host remotegpu-train-1", "    HostName 127.0.0.1", f"    Port {port}", "    User root",
    ]
    # A name that got into the store some other way (an old row, a bug) never reaches the block.
    container = client.server.app[CONTAINER]
    async with container.uow() as uow:
        stored = await uow.environments.get(env["id"])
        stored.name = INJECTION
        await uow.environments.update(stored)
        await uow.commit()
    r = await client.get(f"{ENVS}/{env['id']}/access", headers=user.headers)
    assert r.status == 200
    access = await r.json()
    assert "ProxyCommand" not in access["ssh"]["config"] and "ProxyCommand" not in access["ssh"]["command"]
    assert access["ssh"]["config"].splitlines()[0] == f"Host remotegpu-{env['id']}"
    assert len(access["ssh"]["config"].splitlines()) == 4
    # Nor does a host address that is no host name (agents report theirs): no SSH offered, no 500.
    async with container.uow() as uow:
        host = await uow.hosts.get(agent.host_id)
        host.address = "gpu.lab\n    ProxyCommand touch /tmp/remotegpu-pwned"
        await uow.hosts.update(host)
        await uow.commit()
    r = await client.get(f"{ENVS}/{env['id']}/access", headers=user.headers)
    assert r.status == 200
    access = await r.json()
    assert access["ssh"] is None and "ProxyCommand" not in await r.text()


async def test_host_addresses_must_be_host_names_or_ips(client, new_account):
    admin = await new_account(admin=True)
    for bad in ("gpu.lab\n    ProxyCommand id", "a b", "fe80::1%eth0", "host;id", "-oProxyCommand=id"):
        r = await client.post("/api/v1/hosts", json={"name": "h", "address": bad}, headers=admin.headers)
        assert r.status == 422, (bad, await r.text())
    r = await client.post("/api/v1/hosts", json={"name": "h\nx"}, headers=admin.headers)
    assert r.status == 422
    for i, good in enumerate(("gpu-1.lab.example", "10.0.0.7", "2001:db8::7")):
        r = await client.post("/api/v1/hosts", json={"name": f"h{i}", "address": good}, headers=admin.headers)
        assert r.status == 201, await r.text()


# --- environment variables ----------------------------------------------------------------------


async def test_reserved_variables_are_refused_with_the_rule_and_nothing_is_created(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    cases = {
        "NVIDIA_VISIBLE_DEVICES": "NVIDIA_*", "NVIDIA_DRIVER_CAPABILITIES": "NVIDIA_*", "CUDA_VISIBLE_DEVICES": "CUDA_*",
        "LD_PRELOAD": "LD_*", "ld_library_path": "LD_*", "PYTHONPATH": "PYTHON*", "PYTHONWARNINGS": "PYTHON*",
        "REMOTEGPU_JUPYTER_TOKEN": "REMOTEGPU_*", "JUPYTER_CONFIG_DIR": "JUPYTER_*", "SSH_AUTH_SOCK": "SSH_*",
        "DOCKER_HOST": "DOCKER_*", "PATH": "PATH", "HOME": "HOME", "SHELL": "SHELL", "USER": "USER",
        "BROWSER": "BROWSER", "GLIBC_TUNABLES": "GLIBC_TUNABLES",
    }
    for field in ("env", "secret_env"):
        for name, rule in cases.items():
            r = await create(client, user, "x", **{field: {"OK": "1", name: "all"}})
            assert r.status == 422, (field, name, await r.text())
            error = (await r.json())["error"]
            assert error["code"] == "reserved_variable" and error["details"]["rule"] == rule, error
            assert error["details"]["name"] == name and error["details"]["field"] == field
            assert rule in error["message"] and "NVIDIA_*" in error["details"]["reserved"]
    assert (await (await client.get(ENVS, headers=user.headers)).json())["total"] == 0
    assert (await agent.beat())["desired"] == []
    # Harmless tuning knobs inside reserved families still pass.
    env = await created(client, user, "ok", gpu_count=0, env={"PYTHONUNBUFFERED": "1", "CUDA_LAUNCH_BLOCKING": "1"})
    assert env["env"] == {"CUDA_LAUNCH_BLOCKING": "1", "PYTHONUNBUFFERED": "1"}
    r = await create(client, user, "both", env={"TOKEN": "a"}, secret_env={"TOKEN": "b"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "duplicate_variable"
    r = await create(client, user, "nul", secret_env={"TOKEN": "a\x00b"})
    assert r.status == 422


SECRET = "hf_live_5ecret-value-that-must-never-come-back"


async def test_secret_variables_are_write_only_sealed_at_rest_and_reach_the_container(client, new_account, caplog):
    caplog.set_level(logging.DEBUG)
    admin, agent = await admin_and_host(client, new_account)
    owner, viewer, member = [await new_account() for _ in range(3)]
    team = await (await client.post("/api/v1/workspaces", json={"name": "lab"}, headers=owner.headers)).json()
    await add_member(client, team["id"], viewer, Role.VIEWER)
    await add_member(client, team["id"], member, Role.MEMBER)

    r = await create(client, owner, "train", gpu_count=1, workspace_id=team["id"], shared=True,
                     env={"WANDB_MODE": "offline"}, secret_env={"HF_TOKEN": SECRET})
    assert r.status == 202, await r.text()
    text = await r.text()
    assert SECRET not in text
    env = await r.json()
    assert env["env"] == {"WANDB_MODE": "offline"}
    assert env["variables"] == [
        {"name": "WANDB_MODE", "secret": False, "value": "offline"},
        {"name": "HF_TOKEN", "secret": True, "value": None},
    ]

    # At rest: sealed, bound to this environment (not the plaintext, not reversible without the key).
    container = client.server.app[CONTAINER]
    async with container.uow() as uow:
        stored = await uow.environments.get(env["id"])
    assert set(stored.secret_env) == {"HF_TOKEN"} and SECRET not in stored.secret_env["HF_TOKEN"]
    assert stored.secret_env["HF_TOKEN"].startswith("v1.") and "HF_TOKEN" not in stored.env

    # The container gets it: the agent's desired spec carries the plaintext, platform variables win.
    (desired,) = (await agent.beat())["desired"]
    assert desired["spec"]["env"]["HF_TOKEN"] == SECRET and desired["spec"]["env"]["WANDB_MODE"] == "offline"
    await agent.converge()

    # Nobody reads it back: owner, workspace viewer, another member; one, list, stream-shaped views alike.
    for account in (owner, viewer, member):
        one = await client.get(f"{ENVS}/{env['id']}", headers=account.headers)
        listed = await client.get(f"{ENVS}?workspace_id={team['id']}", headers=account.headers)
        assert one.status == 200 and listed.status == 200
        assert SECRET not in await one.text() and SECRET not in await listed.text()
    # Plain values: those who operate it see them; a viewer and another member see names only.
    assert (await get(client, owner, env["id"]))["env"] == {"WANDB_MODE": "offline"}
    for account in (viewer, member):
        seen = await get(client, account, env["id"])
        assert seen["env"] == {} and "offline" not in str(seen)
        assert seen["variables"] == [
            {"name": "WANDB_MODE", "secret": False, "value": None},
            {"name": "HF_TOKEN", "secret": True, "value": None},
        ]
    # Never logged (request handling, agent replies, everything captured at DEBUG).
    assert not [rec for rec in caplog.records if SECRET in rec.getMessage() or SECRET in str(rec.__dict__)]


async def test_secret_values_do_not_open_with_another_servers_key_or_in_another_environment(client, new_account, tmp_path):
    from remotegpu.adapters.security.sealer import AesGcmSealer
    from remotegpu.application.environments.secrets import open_variables

    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    a = await created(client, user, "a", gpu_count=0, secret_env={"K": SECRET})
    b = await created(client, user, "b", gpu_count=0)
    container = client.server.app[CONTAINER]
    async with container.uow() as uow:
        sealed = (await uow.environments.get(a["id"])).secret_env
    box = container.sealer()
    assert open_variables(box, a["id"], sealed) == {"K": SECRET}
    assert open_variables(box, b["id"], sealed) == {}  # copied to another row: does not open
    assert open_variables(AesGcmSealer("another-server-secret"), a["id"], sealed) == {}


# --- images ---------------------------------------------------------------------------------------


async def test_images_must_match_the_allowed_patterns(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    user = await new_account()
    for image in ("docker.io/library/ubuntu:22.04", "evil/miner:latest", "registry.evil.example/remotegpu/base:latest",
                  "remotegpu.evil.example/x:1"):
        r = await create(client, user, "x", gpu_count=0, image=image)
        assert r.status == 422, (image, await r.text())
        error = (await r.json())["error"]
        assert error["code"] == "image_not_allowed" and error["details"]["patterns"] == ["remotegpu/*"], error
        assert "remotegpu/*" in error["message"]
    for image in ("Not An Image", "remotegpu/base:latest\nx", "a//b"):
        r = await create(client, user, "x", gpu_count=0, image=image)
        assert r.status == 422 and (await r.json())["error"]["code"] in ("invalid_image", "validation_error")
    assert (await (await client.get(ENVS, headers=user.headers)).json())["total"] == 0
    assert (await created(client, user, "default", gpu_count=0))["image"] == "remotegpu/base:latest"
    assert (await created(client, user, "other", gpu_count=0, image="remotegpu/pytorch:2.3"))["image"] == "remotegpu/pytorch:2.3"


@pytest.fixture
async def lab_registry_client(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, allowed_images="registry.lab:5000/ml/*, pytorch/pytorch", base_image="lab/base:1")
    container = build_container(settings, persistence="memory")
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())


async def test_operators_choose_the_patterns_and_the_base_image_is_always_allowed(lab_registry_client):
    client = lab_registry_client
    user = await signup(client)

    async def attempt(image: str | None) -> int:
        extra = {"image": image} if image else {}
        r = await create(client, user, "x", gpu_count=0, **extra)
        return r.status

    assert await attempt(None) == 202  # lab/base:1, the base image
    assert await attempt("registry.lab:5000/ml/train:3") == 202
    assert await attempt("pytorch/pytorch:2.3.0-cuda12.1") == 202  # a repository pattern allows its tags
    assert await attempt("remotegpu/base:latest") == 422  # not listed here
    assert await attempt("registry.lab:5000/other/x") == 422


# --- bounded JSON --------------------------------------------------------------------------------


async def test_deeply_nested_or_huge_json_is_422_never_500(client, new_account):
    user = await new_account()
    headers = {**user.headers, "Content-Type": "application/json"}
    ws = user.personal_workspace_id
    very_deep = "[" * 200_000 + "]" * 200_000  # beyond the decoder's own recursion limit (was a 500)
    r = await client.post(ENVS, data=very_deep, headers=headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "too_deep", await r.text()
    nested = '{"name": "a", "workspace_id": "%s", "env": %s}' % (ws, '{"A":' * 40 + '"x"' + "}" * 40)
    r = await client.post(ENVS, data=nested, headers=headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "too_deep"
    many = '{"name": "a", "workspace_id": "%s", "env": {}, "x": [%s]}' % (ws, ",".join(["0"] * 10_001))
    r = await client.post(ENVS, data=many, headers=headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "too_many_items"
    # Every JSON route, the unauthenticated ones included.
    r = await client.post("/api/v1/auth/login", data=very_deep, headers={"Content-Type": "application/json"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "too_deep"
    # Within the bounds nothing changes.
    r = await client.post(ENVS, json={"name": "fine", "workspace_id": ws, "gpu_count": 0}, headers=user.headers)
    assert r.status in (202, 404, 409), await r.text()
