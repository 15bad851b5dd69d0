"""The agent installs the environment's platform-made host key: in the same exec as the
authorized_keys, the private key in the exec's environment (never on a command line),
once per container and key; never on the ``local`` runtime (that is this machine's
/etc/ssh). The install script itself, run by a real shell: the key replaces every
other host key and sshd is told to reload only when it changed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from remotegpu.adapters.access.ssh_keys import Ed25519KeyPairs
from remotegpu.adapters.fleet.wire import desired_from_dict, desired_to_dict
from remotegpu.application.fleet.agent import HOST_KEY_VARIABLE, access_command
from remotegpu.application.fleet.agent_protocol import DesiredEnvironment
from tests.unit.fleet.test_host_agent import (  # noqa: F401 - its fixtures, reused
    agent,
    credentials,
    link,
    make_agent,
    make_spec,
    runtime,
)

PUBLIC, PRIVATE = Ed25519KeyPairs().generate()
PUBLIC_2, PRIVATE_2 = Ed25519KeyPairs().generate()


def installs(runtime) -> list[tuple[list[str], dict[str, str]]]:
    return [(argv, env) for (_, argv), env in zip(runtime.exec_log, runtime.exec_envs) if argv[:2] == ["/bin/sh", "-c"]]


async def test_the_host_key_goes_in_the_environment_of_one_exec_once_per_key(agent, link, runtime):
    spec = make_spec("env-1")
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, ["ssh-ed25519 AAAA alice"], PRIVATE)
    await agent.beat_once()
    await agent.beat_once()
    [(argv, env)] = installs(runtime)
    assert env == {HOST_KEY_VARIABLE: PRIVATE.strip()}
    assert not any("PRIVATE" in a for a in argv) and argv[4] == "ssh-ed25519 AAAA alice" and argv[-1] == "keys"

    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, ["ssh-ed25519 AAAA alice"], PRIVATE_2)
    await agent.beat_once()
    assert [e for _, e in installs(runtime)] == [{HOST_KEY_VARIABLE: PRIVATE.strip()}, {HOST_KEY_VARIABLE: PRIVATE_2.strip()}]


async def test_a_new_container_gets_the_key_again(agent, link, runtime):
    spec = make_spec("env-1")
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, None, PRIVATE)
    await agent.beat_once()
    link.desired["env-1"] = DesiredEnvironment("env-1", "stopped", 1)
    await agent.beat_once()
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, spec, None, PRIVATE)
    await agent.beat_once()
    assert [argv[-1] for argv, _ in installs(runtime)] == ["-", "-"]  # authorized_keys left alone (None)
    assert [e for _, e in installs(runtime)] == [{HOST_KEY_VARIABLE: PRIVATE.strip()}] * 2


async def test_the_local_runtime_never_installs_a_host_key(make_agent, link, runtime):
    agent = make_agent(runtime_name="local")
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, make_spec("env-1"), None, PRIVATE)
    await agent.beat_once()
    assert installs(runtime) == []
    link.desired["env-1"] = DesiredEnvironment("env-1", "running", 1, make_spec("env-1"), ["ssh-ed25519 AAAA a"], PRIVATE)
    await agent.beat_once()
    assert [e for _, e in installs(runtime)] == [{}]


def test_the_host_key_survives_the_wire_and_a_malformed_one_is_refused():
    desired = DesiredEnvironment("env-1", "running", 3, make_spec("env-1"), ["ssh-ed25519 AAAA a"], PRIVATE)
    assert desired_from_dict(desired_to_dict(desired)) == desired
    older_server = desired_to_dict(desired)
    del older_server["ssh_host_private_key"]
    assert desired_from_dict(older_server).ssh_host_private_key is None
    for bad in ("not a key", PRIVATE + "; rm -rf /", PRIVATE.replace("\n", "\n$(id)\n", 2), 42):
        with pytest.raises(ValueError, match="ssh_host_private_key"):
            desired_from_dict({**desired_to_dict(desired), "ssh_host_private_key": bad})


# --- the script, on a real shell ---------------------------------------------------------


def _run(tmp_path, keys, host_key, pid_file_pid: int | None):
    etc = tmp_path / "etc" / "ssh"
    etc.mkdir(parents=True, exist_ok=True)
    pid_file = tmp_path / "sshd.pid"
    if pid_file_pid is not None:
        pid_file.write_text(f"{pid_file_pid}\n")
    argv, env = access_command(keys, host_key)
    argv[2] = (argv[2].replace("/etc/ssh", str(etc)).replace("/run/sshd.pid", str(pid_file))
               .replace("/root/.ssh", str(tmp_path / "root" / ".ssh")))
    subprocess.run(argv, check=True, env={**os.environ, **env}, timeout=30)
    return etc


def _sshd_stand_in() -> subprocess.Popen:
    # SIGHUP back to its default in the child: an ignored signal is inherited through exec,
    # and code run earlier in this test process may have set SIGHUP to ignored.
    return subprocess.Popen(["sleep", "60"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def _ended_by_hangup(process: subprocess.Popen) -> bool:
    try:
        return process.wait(timeout=15) == -signal.SIGHUP
    except subprocess.TimeoutExpired:
        return False


def test_the_script_installs_the_key_alone_and_reloads_sshd_only_when_it_changed(tmp_path):
    etc = tmp_path / "etc" / "ssh"
    etc.mkdir(parents=True)
    for name in ("ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key"):  # the container's own
        (etc / name).write_text("container-made\n")
        (etc / f"{name}.pub").write_text("container-made\n")
    sshd = _sshd_stand_in()
    try:
        _run(tmp_path, ["ssh-ed25519 AAAA alice"], PRIVATE, sshd.pid)
        assert _ended_by_hangup(sshd)
    finally:
        sshd.kill()
    key = etc / "ssh_host_ed25519_key"
    assert key.read_text() == PRIVATE.strip() + "\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in etc.iterdir()) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert (etc / "ssh_host_ed25519_key.pub").read_text().split()[:2] == PUBLIC.split()
    assert "ssh-ed25519 AAAA alice" in (tmp_path / "root" / ".ssh" / "authorized_keys").read_text()

    sshd = _sshd_stand_in()
    try:
        _run(tmp_path, None, PRIVATE, sshd.pid)  # the same key: nothing to reload
        time.sleep(0.3)
        assert sshd.poll() is None
        _run(tmp_path, None, PRIVATE_2, sshd.pid)
        assert _ended_by_hangup(sshd)
    finally:
        sshd.kill()
    assert key.read_text() == PRIVATE_2.strip() + "\n"

