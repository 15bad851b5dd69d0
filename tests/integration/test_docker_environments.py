"""Real Docker through the HTTP API: the whole life of an environment on the embedded agent.

Runs ``remotegpu serve`` (SQLite, in-process agent, Docker runtime, 4 fake GPUs) and
drives it like a user would, checking the containers and volumes Docker really has.
"""

from __future__ import annotations

import time

import pytest

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

FAKE = "4xNVIDIA A100-SXM4-80GB"
IMAGE = "remotegpu/base:latest"


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(docker, tmp_path_factory):
    scope = f"it{int(time.time())}"
    with live_server(
        tmp_path_factory.mktemp("docker-env"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE,
        REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
    ) as srv:
        srv.token = srv.login("admin", "admin-password-123")
        srv.scope = scope
        yield srv
        remove_scope(docker, scope)


def wait_for(server, env_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)
        if code == 200 and env["status"] == status:
            return env
        if time.monotonic() > deadline:
            raise AssertionError(f"environment did not reach {status}: {code} {env}")
        time.sleep(0.2)


def free_gpus(server) -> int:
    code, body = server.request("GET", "/api/v1/gpu-types", token=server.token)
    assert code == 200, body
    return sum(t["free"] for t in body["items"])


def container_of(docker, env_id: str):
    found = docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})
    return found[0] if found else None


def test_create_stop_start_delete_with_disk_kept_and_nothing_left(server, docker):
    code, ws = server.request("GET", "/api/v1/workspaces", token=server.token)
    ws_id = ws["items"][0]["id"]
    assert free_gpus(server) == 4
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": "it", "workspace_id": ws_id, "gpu_count": 2, "cpu_cores": 1, "memory_gib": 1}, token=server.token,
    )
    assert code == 202 and env["status"] in ("starting", "queued"), env
    env = wait_for(server, env["id"], "running")
    assert free_gpus(server) == 2

    container = container_of(docker, env["id"])
    attrs = container.attrs
    assert container.status == "running"
    assert attrs["HostConfig"]["NanoCpus"] == 1_000_000_000
    assert attrs["HostConfig"]["Memory"] == 1024**3
    assert attrs["Config"]["Labels"]["remotegpu.env_id"] == env["id"]
    env_vars = dict(v.split("=", 1) for v in attrs["Config"]["Env"])
    assert env_vars["CUDA_VISIBLE_DEVICES"] == ",".join(str(g["index"]) for g in env["gpus"])
    assert "REMOTEGPU_JUPYTER_TOKEN" in env_vars
    code, out = container.exec_run(["sh", "-c", "echo kept > /root/workspace/proof.txt"])
    assert code == 0

    code, env = server.request("POST", f"/api/v1/environments/{env['id']}/stop", token=server.token)
    assert code == 202 and env["status"] in ("stopping", "stopped")
    assert free_gpus(server) == 4  # released at once, not when the container is gone
    wait_for(server, env["id"], "stopped")
    assert container_of(docker, env["id"]).status == "exited"

    code, env = server.request("POST", f"/api/v1/environments/{env['id']}/start", {}, token=server.token)
    assert code == 202, env
    wait_for(server, env["id"], "running")
    code, out = container_of(docker, env["id"]).exec_run(["cat", "/root/workspace/proof.txt"])
    assert code == 0 and out.decode().strip() == "kept"

    code, events = server.request("GET", f"/api/v1/environments/{env['id']}/events", token=server.token)
    statuses = [e["to_status"] for e in events["items"]]
    assert statuses[:1] == ["queued"] and "stopped" in statuses and statuses[-1] == "running"

    code, env = server.request("DELETE", f"/api/v1/environments/{env['id']}", token=server.token)
    assert code == 202
    deadline = time.monotonic() + 60
    while container_of(docker, env["id"]) is not None or docker.volumes.list(filters={"label": f"remotegpu.env_id={env['id']}"}):
        assert time.monotonic() < deadline, "container or volume left behind"
        time.sleep(0.3)
    code, _ = server.request("GET", f"/api/v1/environments/{env['id']}", token=server.token)
    assert code == 404
    assert free_gpus(server) == 4
