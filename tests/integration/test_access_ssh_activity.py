"""SSH sessions are seen by the Docker runtime (from the container's /proc/<pid>/net/tcp,
no docker exec) while a real OpenSSH client is logged in, and not after it left."""

from __future__ import annotations

import subprocess
import time

from remotegpu.adapters.runtime.docker_runtime import DockerRuntime, established_connections
from tests.integration.conftest import AccessWorld, ssh_argv
from tests.integration.test_access_ssh import eventually, ssh


async def sessions(runtime: DockerRuntime, env_id: str) -> int:
    states = {s.env_id: s for s in await runtime.list()}
    return states[env_id].ssh_sessions


async def test_the_runtime_counts_established_ssh_sessions(access_world: AccessWorld):
    world = access_world
    eventually(lambda: ssh(world, world.alice.key, "true").returncode == 0)
    runtime = DockerRuntime(world.docker, scope=world.scope)
    deadline = time.monotonic() + 15
    while await sessions(runtime, world.env_id) != 0:  # the probe above has hung up
        assert time.monotonic() < deadline, "an SSH session is still counted after the client left"
        time.sleep(0.2)

    client = subprocess.Popen(ssh_argv(world.alice.key, world.ssh_port, "sleep", "30"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while (count := await sessions(runtime, world.env_id)) < 1:
            assert client.poll() is None, client.stderr.read()
            assert time.monotonic() < deadline, "the runtime never saw the SSH session"
            time.sleep(0.2)
        assert count >= 1
        pid = world.container().attrs["State"]["Pid"]
        assert established_connections(pid, 22) == count
        # Only the asked port counts (not Jupyter's 8888, which the proxy's connection
        # pool of an earlier test may still hold open, nor an unused port).
        assert established_connections(pid, 2222) == 0
        inspected = await runtime.inspect(world.env_id)
        assert inspected is not None and inspected.ssh_sessions >= 1
    finally:
        client.kill()
        client.wait(timeout=10)
    deadline = time.monotonic() + 15
    while await sessions(runtime, world.env_id) != 0:
        assert time.monotonic() < deadline, "the session is still counted after the client was killed"
        time.sleep(0.2)

