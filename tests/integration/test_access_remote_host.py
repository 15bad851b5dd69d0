"""Access to an environment on a *remote* host: a second agent (``remotegpu agent``
over HTTP, its own Docker scope and name, private address 127.0.0.1) runs it; the
server reaches its JupyterLab at the host's private address through the proxy, and
its web terminal through the SSH bridge (the environment's own keys, real OpenSSH in
the container) — never through ``docker exec``: the server's own embedded host runs the
in-memory runtime, so no Docker terminal exists in this server at all.

Two tenants share that host: alice owns E (``env_id``), bob owns F (``victim_id``). The
relay attack — E's owner, root in E, makes E's sshd port lead to F's sshd and opens E's
web terminal — is refused twice over: F does not present E's host key (the bridge hangs
up before logging in), and F does not accept E's client key (the end of this module)."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time

import aiohttp
import pytest

from remotegpu.adapters.access.direct_ssh import CLIENT_KEY_OPTIONS

from tests.integration.conftest import IMAGE, wait_running
from tests.support.components import docker_with_image, remove_scope
from tests.support.app_hosts import signed_in_app
from tests.support.live_server import live_server

REMOTE_GPU = "NVIDIA T4 16GB"


SERVER_SECRET = "live-server-secret-key-0123456789abcdef"  # tests/support/live_server.py


class RemoteWorld:
    def __init__(self, server, docker, scope, host_id, env_id, victim_id, alice_token, bob_token, data_dir, alice_key):
        self.server, self.docker, self.scope, self.data_dir = server, docker, scope, data_dir
        self.host_id, self.env_id, self.victim_id = host_id, env_id, victim_id
        self.alice_token, self.bob_token, self.alice_key = alice_token, bob_token, alice_key

    def container(self, env_id: str | None = None):
        found = self.docker.containers.list(filters={"label": f"remotegpu.env_id={env_id or self.env_id}"})
        return found[0] if found else None

    def access(self, env_id: str, token: str) -> dict:
        code, access = self.server.request("GET", f"/api/v1/environments/{env_id}/access", token=token)
        assert code == 200, access
        return access["ssh"]

    def private_keys(self, env_id: str) -> tuple[str, str]:
        """(host key, client key) private halves, as only the server can open them: its
        database row and its secret."""
        from types import SimpleNamespace

        from remotegpu.adapters.security.sealer import AesGcmSealer
        from remotegpu.adapters.access.ssh_keys import Ed25519KeyPairs
        from remotegpu.application.environments.credentials import EnvironmentCredentials

        with sqlite3.connect(self.data_dir / "remotegpu.db") as db:
            row = db.execute("SELECT ssh_host_key_sealed, ssh_client_key_sealed FROM environments WHERE id = ?", (env_id,)).fetchone()
        env = SimpleNamespace(id=env_id, ssh_host_key_sealed=row[0], ssh_client_key_sealed=row[1])
        creds = EnvironmentCredentials(Ed25519KeyPairs(), AesGcmSealer(SERVER_SECRET))
        return creds.host_private_key(env), creds.client_private_key(env)


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
            # A second process on this machine, at 127.0.0.1: loopback allowed explicitly for this host.
            code, host = server.request("POST", "/api/v1/hosts", {"name": f"gpu-{scope}", "allow_loopback": True}, token=admin)
            assert code == 201, host
            env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
            env["REMOTEGPU_LOG_LEVEL"] = "INFO"
            agent = subprocess.Popen(
                [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server.url,
                 "--token", host["join_token"], "--name", f"gpu-{scope}", "--state-dir", str(base / "agent"),
                 "--runtime", "docker", "--docker-scope", scope, "--fake-gpus", f"2x{REMOTE_GPU}",
                 "--private-address", "127.0.0.1"],
                env=env, stdout=agent_log, stderr=subprocess.STDOUT,
            )
            ready = wait_host_ready(server, admin, host["id"], agent, agent_log_path)
            assert ready["runtime"] == "docker" and ready["private_address"] == "127.0.0.1"

            alice, bob = server.signup("alice"), server.signup("bob")
            alice_key = base / "alice_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(alice_key)], check=True)
            code, body = server.request("POST", "/api/v1/users/me/ssh-keys",
                                        {"public_key": alice_key.with_suffix(".pub").read_text(), "name": "laptop"}, token=alice)
            assert code == 201, body
            ids = []
            for token, name in ((alice, "far"), (bob, "victim")):  # two tenants, one host
                code, ws = server.request("GET", "/api/v1/workspaces", token=token)
                assert code == 200, ws
                code, created = server.request(
                    "POST", "/api/v1/environments",
                    {"name": name, "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "gpu_model": REMOTE_GPU,
                     "cpu_cores": 1, "memory_gib": 1},
                    token=token,
                )
                assert code == 202, created
                ids.append(created["id"])
            for token, env_id in zip((alice, bob), ids):
                running = wait_running(server, token, env_id)
                assert running["host_id"] == host["id"]  # placed on the remote host
            yield RemoteWorld(server, docker, scope, host["id"], ids[0], ids[1], alice, bob, base / "server", alice_key)
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


def test_each_environment_trusts_only_its_own_client_key_and_presents_only_its_platform_made_host_key(remote_world):
    world = remote_world
    for env_id, other_id, token in ((world.env_id, world.victim_id, world.alice_token), (world.victim_id, world.env_id, world.bob_token)):
        container = world.container(env_id)
        code, out = container.exec_run(["cat", "/root/.ssh/authorized_keys"])
        assert code == 0
        authorized = out.decode()
        own_public = _public_of(world.private_keys(env_id)[1])
        other_public = _public_of(world.private_keys(other_id)[1])
        assert f"{CLIENT_KEY_OPTIONS} {own_public} remotegpu-web-terminal" in authorized
        assert other_public not in authorized
        assert "remotegpu-platform" not in authorized and "PRIVATE" not in authorized  # the former shared key is gone
        code, out = container.exec_run(["sh", "-c", "ls /etc/ssh/ | grep '^ssh_host_'; cat /etc/ssh/ssh_host_ed25519_key"])
        assert code == 0
        listed, private = out.decode().split("-----BEGIN", 1)
        assert listed.split() == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]  # no container-made keys left
        assert _public_of("-----BEGIN" + private) == " ".join(world.access(env_id, token)["known_hosts"].split()[1:])


def _public_of(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_the_known_hosts_line_of_the_access_info_works_with_strict_checking(remote_world, tmp_path):
    """Real OpenSSH, StrictHostKeyChecking=yes, only the line the access info gives."""
    world = remote_world
    ssh = world.access(world.env_id, world.alice_token)
    line = ssh["known_hosts"]
    assert line.startswith(f"[{ssh['host']}]:{ssh['port']} ssh-ed25519 ")
    known = tmp_path / "known_hosts"
    known.write_text(line.replace(line.split()[0], f"[127.0.0.1]:{ssh['port']}") + "\n")

    def strict(known_hosts) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(world.alice_key), "-p", str(ssh["port"]), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=10", "root@127.0.0.1", "echo", "strict-ok"],
            capture_output=True, text=True, timeout=30,
        )

    deadline = time.monotonic() + 60
    while (result := strict(known)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)  # alice's key reaches authorized_keys on a beat
    assert result.returncode == 0 and result.stdout.strip() == "strict-ok", result.stderr
    # The victim's line (what bob is told) does not verify alice's environment.
    victim_line = world.access(world.victim_id, world.bob_token)["known_hosts"]
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{ssh['port']} " + " ".join(victim_line.split()[1:]) + "\n")
    result = strict(wrong)
    assert result.returncode == 255 and "verification failed" in result.stderr.lower(), result.stderr


async def test_the_ssh_bridge_logs_in_with_the_environments_keys_and_refuses_any_other_host_key(remote_world):
    from remotegpu.adapters.access.ssh_terminal import SshTerminals
    from remotegpu.application.environments.ports import EnvironmentRuntimeError
    from remotegpu.application.environments.terminal import TerminalTarget
    from remotegpu.domain.fleet.models import Host

    world = remote_world
    ssh = world.access(world.env_id, world.alice_token)
    pinned = " ".join(ssh["known_hosts"].split()[1:])
    _, client_key = world.private_keys(world.env_id)
    terminals = SshTerminals(connect_timeout=10)
    host = Host(id=world.host_id, name="remote", private_address="127.0.0.1")
    session = await terminals.open(TerminalTarget(world.env_id, host, ssh["port"], pinned, client_key))
    await session.close()
    impostor = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJxkPMBHUSDz3sqrP3oUGCu1d2Xo8Jm0D3L1S0Ylq3yB"
    with pytest.raises(EnvironmentRuntimeError, match="host key"):
        await terminals.open(TerminalTarget(world.env_id, host, ssh["port"], impostor, client_key))


# --- the relay attack ----------------------------------------------------------------------

#: What E's owner runs in E (as root, in his own terminal): sshd replaced by a sleeper the
#: entrypoint keeps "restarting", the real sshd stopped: E's port 22 is free for a relay.
FREE_PORT_22 = (
    "set -e; mv /usr/sbin/sshd /usr/sbin/sshd.real; "
    "printf '#!/bin/sh\\necho $$ > /run/fake-sshd.pid\\nexec sleep 100000\\n' > /usr/sbin/sshd; chmod 755 /usr/sbin/sshd; "
    "kill $(cat /run/sshd.pid)"
)
RESTORE_SSHD = "mv -f /usr/sbin/sshd.real /usr/sbin/sshd; kill $(cat /run/fake-sshd.pid) 2>/dev/null; true"


async def presented_host_key(port: int) -> str | None:
    """The host key whatever listens on 127.0.0.1:``port`` presents ("type base64"), or None."""
    import asyncssh

    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key("127.0.0.1", port, server_host_key_algs=["ssh-ed25519"]), 15)
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        return None
    return None if key is None else " ".join(key.export_public_key().decode().split()[:2])


async def until(check, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)
    return result


async def test_a_relay_from_e_to_f_with_fs_public_host_key_planted_in_e_is_refused(remote_world):
    """The attack of issue 11: alice (root in E) knows F's public host key (the strongest
    attacker: she is not shown it), plants it where E's key files are, makes E's sshd port
    lead to F's sshd, and opens E's web terminal. The bridge expects E's platform-made
    key, F presents F's: the connection ends before anything is authenticated."""
    from tests.support.netns_relay import NetnsRelay, listen_in_netns_of

    world = remote_world
    e_ssh = world.access(world.env_id, world.alice_token)
    f_ssh = world.access(world.victim_id, world.bob_token)
    e_key, f_key = (" ".join(s["known_hosts"].split()[1:]) for s in (e_ssh, f_ssh))
    assert e_key != f_key
    e = world.container(world.env_id)
    f_logs_before = world.container(world.victim_id).logs().decode()

    # Root in E: F's public key where E's sshd keys live (what the agent once reported), sshd out of the way.
    code, out = e.exec_run(["sh", "-c", f"echo '{f_key} root@victim' > /etc/ssh/ssh_host_ed25519_key.pub && {FREE_PORT_22}"])
    assert code == 0, out
    relay = None
    try:
        pid = e.attrs["State"]["Pid"]
        deadline = time.monotonic() + 30
        while relay is None:
            try:
                relay = NetnsRelay(listen_in_netns_of(pid, 22), ("127.0.0.1", f_ssh["port"]))
            except OSError:  # the old sshd is still going away
                assert time.monotonic() < deadline, "E's port 22 did not free up"
                await asyncio.sleep(0.3)
        # The relay works: E's published port now answers with F's sshd.
        assert await until(lambda: _is(presented_host_key(e_ssh["port"]), f_key)) is True
        relayed = relay.connections

        async with aiohttp.ClientSession(world.server.url, headers=bearer(world.alice_token)) as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(f"/api/v1/environments/{world.env_id}/terminal")
            assert refused.value.status == 409
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            async with s.get(f"/api/v1/environments/{world.env_id}/terminal", headers=upgrade) as r:  # the same, readable
                body = await r.json()
                assert r.status == 409 and "host key" in body["error"]["message"], body
        assert relay.connections > relayed  # the bridge did go through the relay to F ...
        f_logs = world.container(world.victim_id).logs().decode()[len(f_logs_before):]
        assert "Accepted" not in f_logs  # ... and never logged in there
    finally:
        if relay is not None:
            relay.close()
        e.exec_run(["sh", "-c", RESTORE_SSHD])
        e.exec_run(["sh", "-c", "ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub"])
    # E is itself again: its own key on its port, its terminal works.
    assert await until(lambda: _is(presented_host_key(e_ssh["port"]), e_key)) is True
    async with aiohttp.ClientSession(world.server.url, headers=bearer(world.alice_token)) as s:
        ws = await open_terminal(s, world.env_id)
        async with ws:
            await ws.send_str("echo back-$RANDOM\r")
            await Screen(ws).until(r"back-\d+")


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected


async def test_es_client_key_does_not_open_f_even_when_fs_host_key_is_not_checked(remote_world):
    """The second layer on its own: were the host key not checked at all, F's sshd
    would still refuse the key that opens E (and E's, F's)."""
    import asyncssh

    world = remote_world
    e_port = world.access(world.env_id, world.alice_token)["port"]
    f_port = world.access(world.victim_id, world.bob_token)["port"]
    e_client = asyncssh.import_private_key(world.private_keys(world.env_id)[1])
    f_client = asyncssh.import_private_key(world.private_keys(world.victim_id)[1])

    async def login(port: int, key) -> str:
        async with asyncssh.connect("127.0.0.1", port, username="root", client_keys=[key], known_hosts=None, config=[],
                                    agent_path=None, preferred_auth="publickey", connect_timeout=15) as conn:
            return (await conn.run("echo in-$HOSTNAME", check=True)).stdout.strip()

    assert (await login(e_port, e_client)).startswith("in-")  # the key is good: it opens E
    for port, key in ((f_port, e_client), (e_port, f_client)):
        with pytest.raises(asyncssh.PermissionDenied):
            await login(port, key)


async def test_the_host_key_survives_a_stop_and_start_in_a_new_container(remote_world):
    """Users pin the key once: a stopped and started environment presents the same key
    (the agent installs it in whatever container now runs — a new one when the start
    recreates it, as it does today), and the terminal still gets in."""
    world = remote_world
    before = world.access(world.victim_id, world.bob_token)
    for action in ("stop", "start"):
        code, body = world.server.request("POST", f"/api/v1/environments/{world.victim_id}/{action}", {} if action == "start" else None,
                                          token=world.bob_token)
        assert code == 202, body
        want = "stopped" if action == "stop" else "running"
        deadline = time.monotonic() + 90
        while (env := world.server.request("GET", f"/api/v1/environments/{world.victim_id}", token=world.bob_token)[1])["status"] != want:
            assert time.monotonic() < deadline, env
            await asyncio.sleep(0.3)
    after = world.access(world.victim_id, world.bob_token)
    assert after["known_hosts"].split()[1:] == before["known_hosts"].split()[1:]
    key = " ".join(after["known_hosts"].split()[1:])
    assert await until(lambda: _is(presented_host_key(after["port"]), key)) is True
    async with aiohttp.ClientSession(world.server.url, headers=bearer(world.bob_token)) as s:
        ws = await open_terminal(s, world.victim_id)
        async with ws:
            await ws.send_str("echo again-$RANDOM\r")
            await Screen(ws).until(r"again-\d+")
