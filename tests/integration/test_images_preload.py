"""Preload (issue 15), on real Docker and a real registry: a catalog image marked preload
is pulled by a host's agent ahead of time, appears in the host's images, and placement
prefers that host.

Two hosts: the server's embedded agent on the ``memory`` runtime (first in the fleet's
order: without a preference it wins the ties; it has no Docker, so no images) and a
second ``remotegpu agent`` process on Docker, which preloads. An environment of an image
no host has goes to the first; one of the preloaded image to the second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from remotegpu.adapters.runtime.docker_images import list_images
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server
from tests.support.registry import running_registry

IMAGE = "remotegpu/base:latest"
GPUS = "1xNVIDIA L4 24GB"


@contextmanager
def docker_agent(server_url: str, root: Path, name: str, token: str, scope: str):
    cmd = [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server_url, "--runtime", "docker",
           "--fake-gpus", GPUS, "--state-dir", str(root / "agent"), "--name", name, "--docker-scope", scope,
           "--token", token]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
    env["REMOTEGPU_LOG_LEVEL"] = "INFO"
    with open(root / "agent.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.3)


@pytest.fixture()
def world(tmp_path):
    docker = docker_with_image(IMAGE)
    stamp = int(time.time())
    scope = f"preload{stamp}"
    with running_registry() as reg:
        # A platform image in the registry that this Docker does not have (pushed, then untagged).
        reference = f"{reg.address}/remotegpu/platform/preloaded:p{stamp}"
        repo, tag = reference.rsplit(":", 1)
        docker.images.get(IMAGE).tag(repo, tag)
        auth = {"username": reg.username, "password": reg.password}
        try:
            for line in docker.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
                assert "error" not in line, line
            docker.images.remove(reference)
            assert not list_images(docker, name=reference)
            with live_server(tmp_path / "server", REMOTEGPU_RUNTIME="memory", REMOTEGPU_AGENT_FAKE_GPUS=GPUS,
                             REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_AGENT_NAME=f"a-first-{stamp}",
                             REMOTEGPU_REGISTRY_URL=reg.address, REMOTEGPU_REGISTRY_USERNAME=reg.username,
                             REMOTEGPU_REGISTRY_PASSWORD=reg.password) as server:
                admin = server.login("admin", "admin-password-123")
                wait_until(lambda: len(server.request("GET", "/api/v1/hosts", token=admin)[1]["items"]) == 1, 60,
                           "the embedded host")
                code, host_b = server.request("POST", "/api/v1/hosts", {"name": f"b-docker-{stamp}", "allow_loopback": True},
                                              token=admin)
                assert code == 201, host_b
                with docker_agent(server.url, tmp_path, f"b-docker-{stamp}", host_b["join_token"], scope):
                    def ready():
                        hosts = server.request("GET", "/api/v1/hosts", token=admin)[1]["items"]
                        return len([h for h in hosts if h["status"] == "ready"]) == 2 and hosts
                    hosts = wait_until(ready, 60, "both hosts ready")
                    ws = server.request("GET", "/api/v1/workspaces", token=admin)[1]["items"][0]["id"]
                    yield server, admin, ws, docker, reg, reference, {h["name"]: h["id"] for h in hosts}, stamp
        finally:
            remove_scope(docker, scope)
            for image in list_images(docker):
                for ref in image.tags:
                    if ref.startswith(reg.address + "/"):
                        docker.images.remove(ref, force=True)


def test_a_preloaded_image_is_pulled_ahead_and_placement_prefers_its_host(world):
    server, admin, ws, docker, reg, reference, hosts, stamp = world
    first, with_docker = hosts[f"a-first-{stamp}"], hosts[f"b-docker-{stamp}"]
    name, tag = reference.rsplit("/", 1)[1].split(":")
    code, image = server.request("POST", "/api/v1/images", {"name": name, "tag": tag, "reference": reference,
                                                            "preload": True}, token=admin)
    assert code == 201, image
    assert image["digest"].startswith("sha256:")  # read from the registry
    # Another platform image, in the catalog but on no host (never pushed).
    code, absent = server.request("POST", "/api/v1/images", {"name": "absent", "tag": f"a{stamp}",
                                                             "reference": f"{reg.address}/remotegpu/platform/absent:a{stamp}"},
                                  token=admin)
    assert code == 201, absent

    # The Docker host's agent pulls it ahead of time (with the registry's credentials from its heartbeat).
    wait_until(lambda: list_images(docker, name=reference), 300, "the preload pull")

    # No host has "absent": the first host in the fleet's order takes it.
    def create(image_id: str, n: str) -> dict:
        code, env = server.request("POST", "/api/v1/environments", {
            "name": n, "workspace_id": ws, "cpu_cores": 1, "memory_gib": 1, "image_id": image_id}, token=admin)
        assert code == 202, env
        return wait_until(lambda: (e := server.request("GET", f"/api/v1/environments/{env['id']}", token=admin)[1])
                          ["host_id"] and e, 60, "placed")

    control = create(absent["id"], "control")
    assert control["host_id"] == first, (control, hosts)
    # The preloaded image's environment goes to the host that has it (the host's agent
    # reports its catalog images every IMAGES_CHECK_SECONDS: wait for the report).
    def placed_on_docker_host():
        env = create(image["id"], f"pre{int(time.monotonic() * 1000) % 100000}")
        if env["host_id"] == with_docker:
            return env
        assert server.request("DELETE", f"/api/v1/environments/{env['id']}", token=admin)[0] == 202
        return None

    env = wait_until(placed_on_docker_host, 120, "an environment of the preloaded image on the host that has it")
    wait_until(lambda: server.request("GET", f"/api/v1/environments/{env['id']}", token=admin)[1]["status"] == "running",
               120, "running without a pull")
    code, events = server.request("GET", f"/api/v1/environments/{env['id']}/events?limit=100", token=admin)
    assert not any("pulling image" in e["reason"] for e in events["items"]), events
    for e in (control, env):
        assert server.request("DELETE", f"/api/v1/environments/{e['id']}", token=admin)[0] == 202
