"""Access to an environment on a *remote* host: a second agent (``remotegpu agent``
over HTTP, its own Docker scope and name, private address 127.0.0.1) runs it; the
server reaches its JupyterLab at the host's private address through the proxy, and
its web terminal through the SSH bridge (the platform's key, real OpenSSH in the
container) — never through ``docker exec``: the server's own embedded host runs the
in-memory runtime, so no Docker terminal exists in this server at all."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.integration.conftest import IMAGE, wait_running
from tests.support.components import docker_with_image, remove_scope
from tests.support.app_hosts import signed_in_app
from tests.support.live_server import live_server

REMOTE_GPU = "NVIDIA T4 16GB"


class RemoteWorld:
    def __init__(self, server, docker, scope, host_id, env_id, alice_token, bob_token, data_dir):
        self.server, self.docker, self.scope, self.data_dir = server, docker, scope, data_dir
        self.host_id, self.env_id = host_id, env_id
        self.alice_token, self.bob_token = alice_token, bob_token

    def container(self):
        found = self.docker.containers.list(filters={"label": f"remotegpu.env_id={self.env_id}"})
        return found[0] if found else None


def wait_host_ready(server, admin_token: str, host_id: str, agent: subprocess.Popen, log_path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, host = server.request("GET", f"/api/v1/hosts/{host_id}", token=admin_token)
        if code == 200 and host["status"] == "ready" and host["gpus"]:
            return host
        if agent.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"remote agent did not come up: {code} {host}\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def remote_world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    scope = f"remote{int(time.time())}"
    base = tmp_path_factory.mktemp("remote")
    with live_server(
        base / "server", REMOTEGPU_RUNTIME="memory", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
        REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_AGENT_NAME=f"embedded-{scope}",
    ) as server:
        agent = None
        agent_log_path = base / "agent.log"
        agent_log = open(agent_log_path, "wb")
        try:
            admin = server.login("admin", "admin-password-123")
            code, host = server.request("POST", "/api/v1/hosts", {"name": f"gpu-{scope}"}, token=admin)
            assert code == 201, host
            env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
            env["REMOTEGPU_LOG_LEVEL"] = "INFO"
            agent = subprocess.Popen(
                [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server.url,
                 "--token", host["join_token"], "--name", f"gpu-{scope}", "--state-dir", str(base / "agent"),
                 "--runtime", "docker", "--docker-scope", scope, "--fake-gpus", f"1x{REMOTE_GPU}",
                 "--private-address", "127.0.0.1"],
                env=env, stdout=agent_log, stderr=subprocess.STDOUT,
            )
            ready = wait_host_ready(server, admin, host["id"], agent, agent_log_path)
            assert ready["runtime"] == "docker" and ready["private_address"] == "127.0.0.1"

            alice, bob = server.signup("alice"), server.signup("bob")
            code, ws = server.request("GET", "/api/v1/workspaces", token=alice)
            assert code == 200, ws
            code, created = server.request(
                "POST", "/api/v1/environments",
                {"name": "far", "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "gpu_model": REMOTE_GPU,
                 "cpu_cores": 1, "memory_gib": 1},
                token=alice,
            )
            assert code == 202, created
            running = wait_running(server, alice, created["id"])
            assert running["host_id"] == host["id"]  # placed on the remote host
            yield RemoteWorld(server, docker, scope, host["id"], created["id"], alice, bob, base / "server")
        finally:
            if agent is not None:
                agent.terminate()
                try:
                    agent.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    agent.kill()
            agent_log.close()
            remove_scope(docker, scope)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_jupyter_is_published_on_the_private_address_only(remote_world):
    bindings = remote_world.container().attrs["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for b in bindings["8888/tcp"]} == {"127.0.0.1"}
    assert {b["HostIp"] for b in bindings["22/tcp"]} in ({""}, {"0.0.0.0"})


async def test_jupyter_status_through_the_proxy(remote_world):
    s, app = await signed_in_app(remote_world.server.url, "alice", "correct horse battery", remote_world.env_id)
    async with s:
        deadline = time.monotonic() + 60
        while True:
            async with s.get(f"{app}/api/status") as r:
                if r.status == 200:
                    assert "started" in await r.json()
                    break
                assert r.status == 502, await r.text()  # Jupyter still starting
            assert time.monotonic() < deadline, "JupyterLab on the remote host did not answer through the proxy"
            await asyncio.sleep(0.5)


async def open_terminal(session: aiohttp.ClientSession, env_id: str, timeout: float = 60):
    """The terminal websocket; sshd may take a moment after the container runs (409 meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await session.ws_connect(f"/api/v1/environments/{env_id}/terminal?cols=100&rows=30")
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


class Screen:
    """The terminal's output so far; ``until`` consumes it up to the end of a match."""

    def __init__(self, ws) -> None:
        self.ws, self.seen = ws, ""

    async def until(self, pattern: str, timeout: float = 20) -> re.Match:
        deadline = time.monotonic() + timeout
        while (match := re.search(pattern, self.seen)) is None:
            msg = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg, self.seen)
            self.seen += msg.data
        self.seen = self.seen[match.end():]
        return match


async def test_terminal_over_the_ssh_bridge_echoes(remote_world):
    async with aiohttp.ClientSession(remote_world.server.url, headers=bearer(remote_world.alice_token)) as s:
        ws = await open_terminal(s, remote_world.env_id)
        async with ws:
            # $RANDOM expands in the shell: the output line differs from the echoed command.
            screen = Screen(ws)
            await ws.send_str("echo hello-$RANDOM; echo via-${SSH_CONNECTION:+ssh}-in-$(pwd)\r")
            await screen.until(r"hello-\d+")
            await screen.until(r"via-ssh-in-/root/workspace")
            await ws.send_str('{"type": "resize", "cols": 132, "rows": 40}')
            await ws.send_str("stty size\r")
            await screen.until(r"40 132")
            await ws.send_str("exit\r")
            deadline = time.monotonic() + 15
            while not ws.closed:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            assert ws.close_code == 1000


async def test_a_non_member_gets_404_from_the_app_handshake_and_the_terminal(remote_world):
    async with aiohttp.ClientSession(remote_world.server.url, headers=bearer(remote_world.bob_token)) as s:
        async with s.get(f"/api/v1/environments/{remote_world.env_id}/apps/jupyter/authorize", allow_redirects=False) as r:
            assert r.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"/api/v1/environments/{remote_world.env_id}/terminal")
        assert refused.value.status == 404


def test_the_platform_key_is_in_authorized_keys_and_its_private_half_stays_in_the_data_dir(remote_world):
    code, out = remote_world.container().exec_run(["cat", "/root/.ssh/authorized_keys"])
    assert code == 0
    assert b"remotegpu-platform" in out and b"PRIVATE" not in out
    key = remote_world.data_dir / "platform_ssh_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and b"OPENSSH PRIVATE KEY" in key.read_bytes()


async def test_the_ssh_bridge_checks_the_host_key_the_agent_reported(remote_world):
    """Once the remote agent has read the environment's host key (the access info then
    offers it), the bridge accepts that key and refuses any other."""
    from remotegpu.adapters.access.platform_key import PlatformSshKey
    from remotegpu.adapters.access.ssh_terminal import SshTerminals
    from remotegpu.application.environments.ports import EnvironmentRuntimeError
    from remotegpu.application.environments.terminal import TerminalTarget
    from remotegpu.domain.fleet.models import Host

    deadline = time.monotonic() + 30
    while True:
        code, access = remote_world.server.request("GET", f"/api/v1/environments/{remote_world.env_id}/access", token=remote_world.alice_token)
        assert code == 200, access
        if access["ssh"]["known_hosts"]:
            break
        assert time.monotonic() < deadline, "the agent did not report the host key"
        await asyncio.sleep(0.5)
    reported = " ".join(access["ssh"]["known_hosts"].split()[1:])
    terminals = SshTerminals(PlatformSshKey(remote_world.data_dir / "platform_ssh_key"), connect_timeout=5)
    host = Host(id=remote_world.host_id, name="remote", private_address="127.0.0.1")
    session = await terminals.open(TerminalTarget(remote_world.env_id, host, access["ssh"]["port"], reported))
    await session.close()
    impostor = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJxkPMBHUSDz3sqrP3oUGCu1d2Xo8Jm0D3L1S0Ylq3yB"
    with pytest.raises(EnvironmentRuntimeError):
        await terminals.open(TerminalTarget(remote_world.env_id, host, access["ssh"]["port"], impostor))
