"""Per-environment SSH credentials: the server makes each environment a host key and a
web-terminal client key; the private halves are sealed under the server's secret; the
host key travels to the agent in the desired state, the client key's public half into
that environment's authorized_keys only; nothing the container says about its keys is
believed."""

from __future__ import annotations

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization

from remotegpu.adapters.access.direct_ssh import CLIENT_KEY_OPTIONS, DirectSshGateway
from remotegpu.adapters.security.sealer import AesGcmSealer
from remotegpu.adapters.access.ssh_keys import Ed25519KeyPairs
from remotegpu.adapters.access.ssh_terminal import SshTerminals, _pinned
from remotegpu.adapters.fleet.wire import observed_from_dict
from remotegpu.application.environments.access_gateway import Entrant, SshEndpoint
from remotegpu.application.environments.credentials import EnvironmentCredentials
from remotegpu.application.shared.sealing import SealBroken
from remotegpu.application.environments.ports import EnvironmentRuntimeError
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.environments.terminal import TerminalTarget
from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from remotegpu.domain.fleet.models import Host, parse_fake_gpus

SECRET = "test-secret-key-for-jwt-signing-0123456789"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJxkPMBHUSDz3sqrP3oUGCu1d2Xo8Jm0D3L1S0Ylq3yB"


def public_of(private_pem: str) -> str:
    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


# --- the adapters ----------------------------------------------------------------------


def test_key_pairs_are_ed25519_in_openssh_formats_and_each_new():
    public, private = Ed25519KeyPairs().generate()
    assert public.startswith("ssh-ed25519 ") and len(public.split()) == 2
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert public_of(private) == public
    assert Ed25519KeyPairs().generate()[0] != public


def test_a_sealed_secret_opens_only_with_the_same_server_secret_and_context():
    sealer = AesGcmSealer(SECRET)
    sealed = sealer.seal(b"private", context="environment:e1:ssh-host-key")
    assert b"private" not in sealed.encode() and sealed.startswith("v1.")
    assert sealer.seal(b"private", context="environment:e1:ssh-host-key") != sealed  # fresh nonce
    assert sealer.open(sealed, context="environment:e1:ssh-host-key") == b"private"
    assert AesGcmSealer(SECRET).open(sealed, context="environment:e1:ssh-host-key") == b"private"  # another replica
    for sealer_, context in ((sealer, "environment:e2:ssh-host-key"), (sealer, "environment:e1:ssh-client-key"),
                             (AesGcmSealer(SECRET + "x"), "environment:e1:ssh-host-key")):
        with pytest.raises(SealBroken):
            sealer_.open(sealed, context=context)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    for broken in (tampered, "", "v1.", "v1.!!!", "v2." + sealed[3:], "plain text"):
        with pytest.raises(SealBroken):
            sealer.open(broken, context="environment:e1:ssh-host-key")


def credentials() -> EnvironmentCredentials:
    return EnvironmentCredentials(Ed25519KeyPairs(), AesGcmSealer(SECRET))


class _Env:
    def __init__(self, env_id: str = "e1") -> None:
        self.id = env_id
        self.ssh_host_key = self.ssh_host_key_sealed = self.ssh_client_key = self.ssh_client_key_sealed = ""


def test_ensure_makes_both_pairs_once_and_replaces_what_no_longer_opens():
    creds, env = credentials(), _Env()
    assert creds.host_private_key(env) is None and creds.client_private_key(env) is None
    assert creds.ensure(env) is True
    assert public_of(creds.host_private_key(env)) == env.ssh_host_key
    assert public_of(creds.client_private_key(env)) == env.ssh_client_key
    assert env.ssh_host_key != env.ssh_client_key
    assert "PRIVATE" not in env.ssh_host_key_sealed + env.ssh_client_key_sealed
    before = (env.ssh_host_key, env.ssh_client_key)
    assert creds.ensure(env) is False and (env.ssh_host_key, env.ssh_client_key) == before

    # Sealed under another server secret (or copied from another row): a new pair.
    other = _Env("e2")
    credentials().ensure(other)
    env.ssh_host_key_sealed = other.ssh_host_key_sealed
    assert creds.host_private_key(env) is None  # bound to its row
    assert creds.ensure(env) is True
    assert env.ssh_host_key not in (before[0], other.ssh_host_key)
    assert public_of(creds.host_private_key(env)) == env.ssh_host_key
    assert env.ssh_client_key == before[1]  # the client key still opened: kept


# --- the use cases ---------------------------------------------------------------------


async def _docker_host(world, name: str = "gpu-key"):
    """A registered host whose agent says it runs Docker (environments with sshd)."""
    host, join = await world.hosts.add(None, name)
    report = HostReport(gpus=parse_fake_gpus("2xNVIDIA L4 24GB", seed=name), cpu_cores=32, memory_gib=128, disk_gib=1000,
                        runtime="docker", runtime_healthy=True, fake_gpus=True)
    _, token = await world.agents.register(join, name, report)
    return token, report


def _with(report: HostReport, observed: list[ObservedEnvironment]) -> HostReport:
    return HostReport(**{**report.__dict__, "observed": observed})


async def test_a_new_environment_has_its_host_key_and_known_hosts_line_at_once(world):
    await _docker_host(world)
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    view = await world.envs.create(alice, CreateRequest(workspace_id=ws, name="e", gpu_count=1, cpu_cores=2, memory_gib=8))
    env = view.env
    assert env.ssh_host_key.startswith("ssh-ed25519 ") and env.ssh_client_key.startswith("ssh-ed25519 ")
    ports = {p.purpose: p.port for p in view.ports}
    ssh = world.container.access_gateway().endpoints(env, view.host, ports, "127.0.0.1").ssh
    assert ssh is not None and ssh.known_hosts.endswith(f":{ports['ssh']} {env.ssh_host_key}")


async def test_the_agent_gets_the_private_host_key_and_the_environments_own_client_key_only(world):
    token, report = await _docker_host(world)
    alice, bob = await world.user("alice"), await world.user("bob")
    mine = (await world.envs.create(alice, CreateRequest(workspace_id=await world.personal_ws(alice), name="a", gpu_count=1))).env
    theirs = (await world.envs.create(bob, CreateRequest(workspace_id=await world.personal_ws(bob), name="b", gpu_count=1))).env
    reply = await world.agents.heartbeat(token, report)
    desired = {d.env_id: d for d in reply.desired}
    assert public_of(desired[mine.id].ssh_host_private_key) == mine.ssh_host_key
    assert public_of(desired[theirs.id].ssh_host_private_key) == theirs.ssh_host_key
    assert desired[mine.id].authorized_keys == [f"{CLIENT_KEY_OPTIONS} {mine.ssh_client_key} remotegpu-web-terminal"]
    assert theirs.ssh_client_key not in "\n".join(desired[mine.id].authorized_keys)
    assert "remotegpu-platform" not in repr(reply)
    assert "PRIVATE" not in repr(desired[mine.id])  # kept out of logs


async def test_what_an_agent_says_about_host_keys_is_ignored(world):
    token, report = await _docker_host(world)
    alice = await world.user("alice")
    env = (await world.envs.create(alice, CreateRequest(workspace_id=await world.personal_ws(alice), name="e", gpu_count=1))).env
    # An older agent (or a container's root, through it) reports another key.
    seen = observed_from_dict({"env_id": env.id, "status": "running", "generation": env.generation, "ssh_host_key": OTHER})
    assert seen == ObservedEnvironment(env.id, "running", env.generation)
    await world.agents.heartbeat(token, _with(report, [seen]))
    assert (await world.envs.get(alice, env.id)).env.ssh_host_key == env.ssh_host_key


async def test_an_environment_made_before_per_environment_keys_gets_them_on_its_hosts_next_beat(world):
    token, report = await _docker_host(world)
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, CreateRequest(workspace_id=await world.personal_ws(alice), name="e", gpu_count=1))).env.id
    async with world.container.uow() as uow:  # what migration 0012 leaves
        env = await uow.environments.get(env_id)
        env.ssh_host_key = env.ssh_host_key_sealed = env.ssh_client_key = env.ssh_client_key_sealed = ""
        await uow.environments.update(env)
        await uow.commit()
    reply = await world.agents.heartbeat(token, report)
    env = (await world.envs.get(alice, env_id)).env
    assert env.ssh_host_key and env.ssh_client_key
    desired = {d.env_id: d for d in reply.desired}[env_id]
    assert public_of(desired.ssh_host_private_key) == env.ssh_host_key
    assert any(env.ssh_client_key in line for line in desired.authorized_keys)


async def test_hosts_whose_runtime_runs_no_sshd_get_no_host_key(world):
    host = await world.add_host("mem-1", "2xNVIDIA L4 24GB")  # reports runtime "memory"
    alice = await world.user("alice")
    await world.envs.create(alice, CreateRequest(workspace_id=await world.personal_ws(alice), name="e", gpu_count=1))
    reply = await host.beat()
    assert [d.ssh_host_private_key for d in reply.desired] == [None]


async def test_the_gateway_installs_the_environments_client_key_first_restricted_and_never_a_private_one():
    env = _Env()
    credentials().ensure(env)
    provision = await DirectSshGateway().provision(
        env, [Entrant("u1", ["ssh-ed25519 AAAA alice"]), Entrant("u2", ["ssh-ed25519 AAAA alice", "ssh-rsa BBBB bob"])],
    )
    assert provision.authorized_keys == [
        f"{CLIENT_KEY_OPTIONS} {env.ssh_client_key} remotegpu-web-terminal", "ssh-ed25519 AAAA alice", "ssh-rsa BBBB bob",
    ]
    assert not any("PRIVATE" in k for k in provision.authorized_keys)
    assert (await DirectSshGateway().provision(_Env(), [Entrant("u1", ["ssh-ed25519 AAAA a"])])).authorized_keys == ["ssh-ed25519 AAAA a"]


# --- the terminal's SSH bridge ---------------------------------------------------------


async def test_the_terminal_target_carries_the_environments_own_client_key(world):
    await _docker_host(world)
    alice = await world.user("alice")
    view = await world.envs.create(alice, CreateRequest(workspace_id=await world.personal_ws(alice), name="e", gpu_count=1))
    entry = world.container.environment_entry()
    target = entry.terminal_target(view.env, view.host, {"ssh": 40022})
    assert (target.ssh_port, target.ssh_host_key) == (40022, view.env.ssh_host_key)
    assert public_of(target.ssh_client_key) == view.env.ssh_client_key
    assert "PRIVATE" not in repr(target)


async def test_the_ssh_bridge_refuses_to_connect_without_both_keys():
    host = Host(id="h1", name="remote", private_address="127.0.0.1")
    env = _Env()
    creds = credentials()
    creds.ensure(env)
    client = creds.client_private_key(env)
    for target in (TerminalTarget("e1", host, 9, "", client), TerminalTarget("e1", host, 9, env.ssh_host_key, "")):
        with pytest.raises(EnvironmentRuntimeError, match="not ready"):
            await SshTerminals(connect_timeout=1).open(target)


def test_the_ssh_bridge_trusts_only_the_environments_key():
    trusted, cas, revoked = _pinned(OTHER)
    assert [k.export_public_key().decode().split()[:2] for k in trusted] == [OTHER.split()]
    assert cas == [] and revoked == []
    assert isinstance(trusted[0], asyncssh.SSHKey)


def test_known_hosts_lines_name_the_port_when_it_is_not_22():
    assert SshEndpoint("gpu1.example", 22022, host_key=OTHER).known_hosts == f"[gpu1.example]:22022 {OTHER}"
    assert SshEndpoint("gpu1.example", 22, host_key=OTHER).known_hosts == f"gpu1.example {OTHER}"
    assert SshEndpoint("gpu1.example", 22022).known_hosts == ""
