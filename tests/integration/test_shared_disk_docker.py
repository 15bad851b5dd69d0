"""Real Docker through the HTTP API: the workspace shared disk, and the storage token
inside a container (issue 14).

``remotegpu serve`` (SQLite, embedded agent on Docker): a workspace turns on its shared
disk; two of its environments on the host see the same read-write /root/shared (one
writes, the other reads); its size is enforced (a write past it fails with ENOSPC; grown,
it takes more at the next start); an environment deleted leaves the shared data in place, and
each container carries REMOTEGPU_TOKEN, which reaches the storage API while it runs and
not once it is stopped.
"""

from __future__ import annotations

import time

import pytest

from remotegpu.adapters.runtime.shared_disks import LoopDisks
from tests.integration.test_storage_mounts_docker import container_of, wait_for
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = "remotegpu/base:latest"


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(docker, tmp_path_factory):
    scope = f"sd{int(time.time())}"
    data_dir = tmp_path_factory.mktemp("shared-disk")
    try:
        with live_server(data_dir, REMOTEGPU_RUNTIME="docker", REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope,
                         REMOTEGPU_AGENT_NAME=f"host-{scope}") as srv:
            srv.token = srv.login("admin", "admin-password-123")
            srv.scope = scope
            yield srv
    finally:
        remove_scope(docker, scope)
        disks = LoopDisks(data_dir / "shared-disks")  # the loop devices and images the agent made
        for image in disks.directory.glob("*.img"):
            disks.release(image.stem, delete=True)


def _exec(docker, env_id: str, script: str, *, ok: bool = True) -> str:
    code, out = container_of(docker, env_id).exec_run(["sh", "-c", script], user="root")
    assert (code == 0) is ok, out
    return out.decode()


def _size_mib(docker, env_id: str) -> int:
    return int(_exec(docker, env_id, "df -m /root/shared | tail -1").split()[1])


def test_shared_disk_is_one_volume_for_the_workspaces_environments_and_outlives_them(server, docker):
    code, workspaces = server.request("GET", "/api/v1/workspaces", token=server.token)
    ws = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    code, disk = server.request("PUT", f"/api/v1/workspaces/{ws}/shared-disk", {"size_gib": 1}, token=server.token)
    assert code == 200 and disk["enabled"] and disk["mount_path"] == "/root/shared"
    envs = []
    for name in ("writer", "reader"):
        code, env = server.request("POST", "/api/v1/environments", {"workspace_id": ws, "name": name, "cpu_cores": 1,
                                                                     "memory_gib": 1, "image": IMAGE}, token=server.token)
        assert code == 202, env
        envs.append(env["id"])
    for env_id in envs:
        wait_for(server, env_id, "running")
    writer, reader = envs
    _exec(docker, writer, "echo 'from the writer' > /root/shared/note.txt")
    assert _exec(docker, reader, "cat /root/shared/note.txt") == "from the writer\n"
    volumes = docker.volumes.list(filters={"label": f"remotegpu.shared_workspace={ws}"})
    assert [v.name for v in volumes] == [f"rgpu-shared-{ws}"]
    # Its size holds: 1 GiB (an ext4 image on a loop device), and a write past it fails.
    assert volumes[0].attrs["Labels"]["remotegpu.disk_enforced"] == "true"
    assert 900 <= _size_mib(docker, reader) <= 1024
    out = _exec(docker, writer, "dd if=/dev/zero of=/root/shared/fill bs=1M count=1100 2>&1", ok=False)
    assert "No space left on device" in out
    _exec(docker, reader, "rm /root/shared/fill")
    # Grown to 2 GiB: the next start of an environment grows it (the reader's, below).
    code, _ = server.request("PUT", f"/api/v1/workspaces/{ws}/shared-disk", {"size_gib": 2}, token=server.token)
    assert code == 200

    # The storage token in the container: storage only, while the environment runs.
    variables = dict(line.split("=", 1) for line in _exec(docker, reader, "env").splitlines() if "=" in line)
    token = variables["REMOTEGPU_TOKEN"]
    assert token.startswith("rgpu_env_") and variables["REMOTEGPU_WORKSPACE_ID"] == ws
    assert server.token not in variables.values()  # the user's own credentials never enter the container
    code, _ = server.request("GET", f"/api/v1/storage/usage?workspace_id={ws}", token=token)
    assert code == 200
    code, _ = server.request("GET", "/api/v1/environments", token=token)
    assert code == 403

    # Deleting an environment keeps the shared data; a stopped one's token no longer works.
    code, _ = server.request("DELETE", f"/api/v1/environments/{writer}", token=server.token)
    assert code in (202, 204)
    code, _ = server.request("POST", f"/api/v1/environments/{reader}/stop", token=server.token)
    assert code in (200, 202)
    wait_for(server, reader, "stopped")
    code, _ = server.request("GET", f"/api/v1/storage/usage?workspace_id={ws}", token=token)
    assert code == 401
    code, _ = server.request("POST", f"/api/v1/environments/{reader}/start", token=server.token)
    assert code in (200, 202)
    wait_for(server, reader, "running")
    assert _exec(docker, reader, "cat /root/shared/note.txt") == "from the writer\n"
    assert 1900 <= _size_mib(docker, reader) <= 2048
