"""The agent keeps authorized_keys in sync through the runtime's exec: written when the
keys (or the container) change, never otherwise; the desired keys travel on the wire.
(The host key installed by the same exec: tests/unit/fleet/test_host_key_install.py.)"""

from __future__ import annotations

import subprocess

from remotegpu.adapters.fleet.wire import desired_from_dict, desired_to_dict
from remotegpu.application.fleet.agent import AUTHORIZED_KEYS_BEGIN, authorized_keys_command
from remotegpu.application.fleet.agent_protocol import DesiredEnvironment
from tests.unit.fleet.test_host_agent import (  # noqa: F401 - its fixtures, reused
    agent,
    credentials,
    link,
    make_agent,
    make_spec,
    runtime,
)


def key_writes(runtime) -> list[str]:
    return [argv[4] for _, argv in runtime.exec_log
            if argv[:2] == ["/bin/sh", "-c"] and AUTHORIZED_KEYS_BEGIN in argv and argv[-1] == "keys"]


async def test_keys_are_written_once_and_again_only_when_they_change(agent, link, runtime):
    spec = make_spec("env-1")
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, ["ssh-ed25519 AAAA alice"])
    await agent.beat_once()
    await agent.beat_once()
    assert key_writes(runtime) == ["ssh-ed25519 AAAA alice"]
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, ["ssh-ed25519 AAAA alice", "ssh-rsa BBBB"])
    await agent.beat_once()
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, [])
    await agent.beat_once()
    assert key_writes(runtime) == ["ssh-ed25519 AAAA alice", "ssh-ed25519 AAAA alice\nssh-rsa BBBB", ""]


async def test_no_keys_in_the_desired_state_leaves_the_file_alone(agent, link, runtime):
    link.want("env-1", "running")
    await agent.beat_once()
    assert key_writes(runtime) == []


def test_desired_keys_and_private_ports_survive_the_wire():
    spec = make_spec("env-1")
    spec = type(spec)(**{**spec.__dict__, "ports": {22: 40022, 8888: 40023}, "private_ports": frozenset({8888})})
    desired = DesiredEnvironment("env-1", "running", 3, spec, ["ssh-ed25519 AAAA a"])
    assert desired_from_dict(desired_to_dict(desired)) == desired
    bare = DesiredEnvironment("env-2", "stopped", 1)
    assert desired_from_dict(desired_to_dict(bare)) == bare


def test_the_install_script_keeps_lines_outside_its_block(tmp_path):
    home = tmp_path / "root"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 MINE user-added\n")
    for keys in (["ssh-ed25519 A one", "ssh-ed25519 B two"], ["ssh-ed25519 B two"]):
        argv = authorized_keys_command(keys)
        argv[2] = argv[2].replace("/root/.ssh", str(home / ".ssh"))
        subprocess.run(argv, check=True)
    lines = (home / ".ssh" / "authorized_keys").read_text().splitlines()
    assert "ssh-ed25519 MINE user-added" in lines
    assert "ssh-ed25519 B two" in lines and "ssh-ed25519 A one" not in lines
    assert lines.count(AUTHORIZED_KEYS_BEGIN) == 1
