"""Fixtures for the access tests (tests/integration/test_access_*.py): one real server
on Docker with one running environment owned by ``alice``, shared by every access test."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.components import binary, docker_with_image, remove_scope
from tests.support.live_server import LiveServer, live_server

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")


@dataclass
class Person:
    name: str
    password: str
    token: str
    key: Path  # private key file; the public one is key.with_suffix(".pub")
    key_ids: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return self.key.with_suffix(".pub").read_text().strip()


@dataclass
class AccessWorld:
    server: LiveServer
    docker: object
    scope: str
    env_id: str
    ssh_port: int
    jupyter_port: int
    alice: Person
    bob: Person
    keys_dir: Path

    def new_key(self, name: str) -> Path:
        path = self.keys_dir / name
        subprocess.run([binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return path

    def add_key(self, person: Person, key: Path) -> str:
        code, body = self.server.request(
            "POST", "/api/v1/users/me/ssh-keys", {"public_key": key.with_suffix(".pub").read_text(), "name": key.name},
            token=person.token,
        )
        assert code == 201, body
        return body["id"]

    def container(self):
        found = self.docker.containers.list(filters={"label": f"remotegpu.env_id={self.env_id}"})
        return found[0] if found else None


def ssh_argv(key: Path, port: int, *command: str) -> list[str]:
    return [
        binary("ssh"), "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR", "root@127.0.0.1", *command,
    ]


def wait_running(server: LiveServer, token: str, env_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=token)
        if code == 200 and env["status"] == "running":
            return env
        if time.monotonic() > deadline:
            raise AssertionError(f"environment did not run: {code} {env}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def access_world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    binary("ssh")
    keys_dir = tmp_path_factory.mktemp("keys")
    scope = f"acc{int(time.time())}"
    # The scope goes once the server (and its agent, which would recreate what it still
    # wants running) has stopped.
    try:
        with live_server(
            tmp_path_factory.mktemp("access"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
            REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
        ) as server:
            people = {}
            for name in ("alice", "bob"):
                password = "correct horse battery"
                token = server.signup(name, password)
                person = Person(name, password, token, keys_dir / name)
                people[name] = person
            world = AccessWorld(server, docker, scope, "", 0, 0, people["alice"], people["bob"], keys_dir)
            for person in people.values():
                world.new_key(person.name)
                person.key_ids.append(world.add_key(person, person.key))
            code, ws = server.request("GET", "/api/v1/workspaces", token=world.alice.token)
            assert code == 200, ws
            code, env = server.request(
                "POST", "/api/v1/environments",
                {"name": "access", "workspace_id": ws["items"][0]["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1},
                token=world.alice.token,
            )
            assert code == 202, env
            env = wait_running(server, world.alice.token, env["id"])
            ports = {p["purpose"]: p["port"] for p in env["ports"]}
            world.env_id, world.ssh_port, world.jupyter_port = env["id"], ports["ssh"], ports["jupyter"]
            yield world
    finally:
        remove_scope(docker, scope)
