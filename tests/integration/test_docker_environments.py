"""Real Docker through the HTTP API: the whole life of an environment on the embedded agent.

Runs ``remotegpu serve`` (SQLite, in-process agent, Docker runtime, 4 fake GPUs) and
drives it like a user would, checking the containers and volumes Docker really has.
"""

from __future__ import annotations

from remotegpu.adapters.runtime.docker_images import list_images
import os
import time

import pytest

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

FAKE = "4xNVIDIA A100-SXM4-80GB"
IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(docker, tmp_path_factory):
    scope = f"it{int(time.time())}"
    # The scope goes once the server (and its agent, which would recreate what it still
    # wants running) has stopped.
    try:
        with live_server(
            tmp_path_factory.mktemp("docker-env"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE,
            REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
        ) as srv:
            srv.token = srv.login("admin", "admin-password-123")
            srv.scope = scope
            deadline = time.monotonic() + 60
            while free_gpus(srv) != 4:  # the embedded agent registers just after start-up
                assert time.monotonic() < deadline, "the embedded agent's host did not show up"
                time.sleep(0.2)
            yield srv
    finally:
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
    # The agent removes container and volume first and reports afterwards; the
    # record goes when the server hears of it, a moment later.
    while server.request("GET", f"/api/v1/environments/{env['id']}", token=server.token)[0] != 404:
        assert time.monotonic() < deadline, "environment record left after its container and volume were removed"
        time.sleep(0.1)
    assert free_gpus(server) == 4


def create(server, ws_id: str, name: str, gpus: int) -> dict:
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": name, "workspace_id": ws_id, "gpu_count": gpus, "cpu_cores": 1, "memory_gib": 1}, token=server.token,
    )
    assert code == 202, env
    return env


def ssh_port(env: dict) -> int:
    return next(p["port"] for p in env["ports"] if p["purpose"] == "ssh")


def delete_and_wait(server, docker, env_id: str) -> None:
    code, _ = server.request("DELETE", f"/api/v1/environments/{env_id}", token=server.token)
    assert code == 202
    deadline = time.monotonic() + 60
    while container_of(docker, env_id) is not None or list_images(
        docker, "rgpu-snapshot", {"label": f"remotegpu.env_id={env_id}"}
    ):
        assert time.monotonic() < deadline, "container or snapshot left behind"
        time.sleep(0.3)


def test_stop_start_keeps_the_whole_disk_and_the_ssh_port(server, docker):
    """A file in /opt, a pip install into the image's venv and a dotfile in /root survive
    stop/start (the same container, started again) and a start on other GPUs (the
    container recreated from a snapshot of its files); the SSH port never changes."""
    from tests.integration.test_docker_disk_kept import CHECK_THE_SYSTEM, EXPECTED, change_the_system

    code, ws = server.request("GET", "/api/v1/workspaces", token=server.token)
    ws_id = ws["items"][0]["id"]
    env = wait_for(server, create(server, ws_id, "whole-disk", 1)["id"], "running")
    first = container_of(docker, env["id"])
    code, out = first.exec_run(change_the_system())
    assert code == 0, out
    port, gpus = ssh_port(env), [g["uuid"] for g in env["gpus"]]

    server.request("POST", f"/api/v1/environments/{env['id']}/stop", token=server.token)
    stopped = wait_for(server, env["id"], "stopped")
    assert ssh_port(stopped) == port, "the SSH port is held while stopped"
    code, _ = server.request("POST", f"/api/v1/environments/{env['id']}/start", {}, token=server.token)
    assert code == 202
    again = wait_for(server, env["id"], "running")
    assert ssh_port(again) == port and [g["uuid"] for g in again["gpus"]] == gpus
    assert container_of(docker, env["id"]).id == first.id, "started again, not recreated"
    code, out = container_of(docker, env["id"]).exec_run(CHECK_THE_SYSTEM)
    assert (code, out.decode()) == (0, EXPECTED)

    # Stopped, its GPU taken by another environment: it starts on another GPU.
    server.request("POST", f"/api/v1/environments/{env['id']}/stop", token=server.token)
    wait_for(server, env["id"], "stopped")
    other = create(server, ws_id, "takes-the-gpu", 3)
    assert set(gpus) <= {g["uuid"] for g in other["gpus"]}, "precondition: the other environment took its GPU"
    server.request("POST", f"/api/v1/environments/{env['id']}/start", {}, token=server.token)
    moved = wait_for(server, env["id"], "running")
    assert ssh_port(moved) == port and [g["uuid"] for g in moved["gpus"]] != gpus
    recreated = container_of(docker, env["id"])
    assert recreated.id != first.id
    code, out = recreated.exec_run(CHECK_THE_SYSTEM)
    assert (code, out.decode()) == (0, EXPECTED)
    code, out = recreated.exec_run(["printenv", "CUDA_VISIBLE_DEVICES"])
    assert out.decode().strip() == ",".join(str(g["index"]) for g in moved["gpus"])

    for env_id in (env["id"], other["id"]):
        delete_and_wait(server, docker, env_id)
    assert free_gpus(server) == 4
