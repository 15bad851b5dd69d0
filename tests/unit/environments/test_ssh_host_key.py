"""The key an environment's sshd presents: the agent reads it from the container
(through /proc/<pid>/root, following no link its user planted), reports it, the server
keeps it, the access info offers it as a known_hosts line and the web terminal's SSH
bridge accepts no other key."""

from __future__ import annotations

import os

import pytest

from remotegpu.adapters.access.ssh_terminal import _pinned
from remotegpu.adapters.fleet.wire import observed_from_dict, observed_to_dict
from remotegpu.adapters.runtime.docker_runtime import SSH_HOST_KEY_FILE, ssh_host_key_in
from remotegpu.application.environments.access_gateway import SshEndpoint
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.fleet.agent_protocol import ObservedEnvironment
from remotegpu.domain.environments.models import ssh_host_key_of
from tests.support.agent_fakes import memory_host_agent

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd6R0ZLmBKo1Jz0oMZ2zjWlBBbvQt3dbXq1lLJ5y8qv"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJxkPMBHUSDz3sqrP3oUGCu1d2Xo8Jm0D3L1S0Ylq3yB"


def test_a_public_key_file_gives_type_and_key_without_its_comment():
    assert ssh_host_key_of(KEY + " root@container\n") == KEY
    assert ssh_host_key_of(KEY) == KEY
    for garbage in ("", "not a key", "ssh-ed25519", "ssh-ed25519 AAAA$$$", "ssh-dss AAAAB3Nza", "root:x:0:0::/root:/bin/bash"):
        assert ssh_host_key_of(garbage) == "", garbage


def test_the_wire_carries_the_key_and_drops_a_malformed_one():
    seen = ObservedEnvironment("e1", "running", ssh_host_key=KEY)
    assert observed_from_dict(observed_to_dict(seen)).ssh_host_key == KEY
    assert observed_from_dict({"env_id": "e1", "status": "running", "ssh_host_key": "hello\nworld"}).ssh_host_key == ""
    assert observed_from_dict({"env_id": "e1", "status": "running"}).ssh_host_key == ""  # older agents


def _container(tmp_path, pid: int = 4242):
    etc = tmp_path / str(pid) / "root" / "etc" / "ssh"
    etc.mkdir(parents=True)
    return etc / os.path.basename(SSH_HOST_KEY_FILE)


def test_the_agent_reads_the_key_from_the_containers_files(tmp_path):
    _container(tmp_path).write_text(KEY + " root@abc\n")
    assert ssh_host_key_in(4242, proc=str(tmp_path)) == KEY
    assert ssh_host_key_in(4243, proc=str(tmp_path)) == ""  # no such process
    assert ssh_host_key_in(None, proc=str(tmp_path)) == ""


@pytest.mark.parametrize("plant", ["file", "folder"])
def test_a_link_planted_in_the_container_is_not_followed(tmp_path, plant):
    """A container's root could point the key file (or /etc/ssh) at a host file: it
    must not be read (and reported, and shown) from outside."""
    host_secret = tmp_path / "host" / "ssh"
    host_secret.mkdir(parents=True)
    (host_secret / os.path.basename(SSH_HOST_KEY_FILE)).write_text(OTHER + " the host's own\n")
    key_file = _container(tmp_path)
    if plant == "file":
        key_file.symlink_to(host_secret / key_file.name)
    else:
        key_file.parent.rmdir()
        key_file.parent.symlink_to(host_secret)
    assert ssh_host_key_in(4242, proc=str(tmp_path)) == ""


def test_known_hosts_lines_name_the_port_when_it_is_not_22():
    assert SshEndpoint("gpu1.example", 22022, host_key=KEY).known_hosts == f"[gpu1.example]:22022 {KEY}"
    assert SshEndpoint("gpu1.example", 22, host_key=KEY).known_hosts == f"gpu1.example {KEY}"
    assert SshEndpoint("gpu1.example", 22022).known_hosts == ""


def test_the_ssh_bridge_trusts_only_the_reported_key():
    assert _pinned("") is None
    trusted, cas, revoked = _pinned(KEY)
    assert [k.export_public_key().decode().split()[:2] for k in trusted] == [KEY.split()]
    assert cas == [] and revoked == []


async def test_the_reported_key_is_kept_and_offered_as_a_known_hosts_line(world):
    agent, runtime = await memory_host_agent(world, "gpu-key", "1xNVIDIA L4 24GB")
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    env_id = (await world.envs.create(alice, CreateRequest(workspace_id=ws, name="e", gpu_count=1, cpu_cores=2, memory_gib=8))).env.id
    await agent.beat_once()
    view = await world.envs.get(alice, env_id)
    assert view.env.ssh_host_key == ""  # not read yet
    runtime.set_ssh_host_key(env_id, KEY)
    await agent.beat_once()
    view = await world.envs.get(alice, env_id)
    assert view.env.ssh_host_key == KEY
    ports = {p.purpose: p.port for p in view.ports}
    ssh = world.container.access_gateway().endpoints(view.env, view.host, ports, "127.0.0.1").ssh
    assert ssh is not None and ssh.known_hosts.endswith(f":{ports['ssh']} {KEY}")
    runtime.set_ssh_host_key(env_id, OTHER)  # the container was recreated: a new key
    await agent.beat_once()
    assert (await world.envs.get(alice, env_id)).env.ssh_host_key == OTHER
