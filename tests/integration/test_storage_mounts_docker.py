"""Real Docker through the HTTP API: a dataset version mounted read-only into an environment.

``remotegpu serve`` (SQLite, local object store, embedded agent on Docker): push a version
(a generated file of REMOTEGPU_TEST_MOUNT_FILE_MIB, default 256 MiB; the issue's 2 GiB with
=2048), mount it, read it from inside the container and check its sha256; the second
start reuses the host cache (nothing downloaded again); a new version with one changed
file stores only that blob, and `latest` resolves to it at the next start.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from remotegpu.entrypoints import storage_cli
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = "remotegpu/base:latest"
MiB = 1024 * 1024
SIZE_MIB = int(os.environ.get("REMOTEGPU_TEST_MOUNT_FILE_MIB", "256"))


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(docker, tmp_path_factory):
    scope = f"sm{int(time.time())}"
    data_dir = tmp_path_factory.mktemp("storage-mounts")
    try:
        with live_server(data_dir, REMOTEGPU_RUNTIME="docker", REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope,
                         REMOTEGPU_AGENT_NAME=f"host-{scope}") as srv:
            srv.token = srv.login("admin", "admin-password-123")
            srv.data_dir = data_dir
            yield srv
    finally:
        remove_scope(docker, scope)


def _generated(path: Path, size: int) -> None:
    block = hashlib.sha256(b"mount").digest() * (MiB // 32)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 32:] + block[: i % 32])


def wait_for(server, env_id: str, status: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)
        if code == 200 and env["status"] == status:
            return env
        assert env.get("status") != "failed", env
        assert time.monotonic() < deadline, f"environment did not reach {status}: {code} {env}"
        time.sleep(0.2)


def container_of(docker, env_id: str):
    found = docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})
    return found[0] if found else None


async def _push(server, name: str, directory: Path) -> dict:
    async with aiohttp.ClientSession() as session:
        api = storage_cli.Api(server.url, server.token, session)
        ws = await api.workspace(None)
        repo = await api.repository("dataset", ws, name)
        return await storage_cli.push(api, "dataset", repo, directory, part_size_mib=32, quiet=True)


def test_mounted_version_read_inside_the_container_cached_on_second_start(server, docker, tmp_path, monkeypatch):
    monkeypatch.setattr(storage_cli, "STATE_DIR", tmp_path / "state")
    code, workspaces = server.request("GET", "/api/v1/workspaces", token=server.token)
    ws = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    code, ds = server.request("POST", "/api/v1/datasets", {"workspace_id": ws, "name": "corpus"}, token=server.token)
    assert code == 201, ds
    src = tmp_path / "src"
    src.mkdir()
    _generated(src / "big.bin", SIZE_MIB * MiB)
    (src / "notes.txt").write_text("version one\n")
    big_sha = hashlib.sha256((src / "big.bin").read_bytes()).hexdigest()
    assert asyncio.run(_push(server, "corpus", src))["number"] == 1

    code, env = server.request("POST", "/api/v1/environments", {
        "name": "reader", "workspace_id": ws, "cpu_cores": 1, "memory_gib": 1,
        "mounts": [{"kind": "dataset", "name": "corpus", "version": "latest"}],
    }, token=server.token)
    assert code == 202, env
    assert env["mounts"] == [{"kind": "dataset", "repository_id": ds["id"], "name": "corpus", "version": "latest",
                              "path": "/datasets/corpus"}]
    env_id = env["id"]
    wait_for(server, env_id, "running")
    container = container_of(docker, env_id)
    out = container.exec_run(["sha256sum", "/datasets/corpus/big.bin"]).output.decode()
    assert out.split()[0] == big_sha, out
    assert container.exec_run(["cat", "/datasets/corpus/notes.txt"]).output == b"version one\n"
    assert container.exec_run(["touch", "/datasets/corpus/new"]).exit_code != 0  # read-only
    mount = next(m for m in container.attrs["Mounts"] if m["Destination"] == "/datasets/corpus")
    assert mount["RW"] is False

    cache = server.data_dir / "agent" / "storage-cache"
    trees = sorted(p.name for p in (cache / "trees").iterdir() if p.is_dir())
    assert len(trees) == 1
    blob_inode = os.stat(cache / "blobs" / big_sha).st_ino

    # Second start: the cached tree is bound again, nothing is downloaded.
    assert server.request("POST", f"/api/v1/environments/{env_id}/stop", token=server.token)[0] == 202
    wait_for(server, env_id, "stopped")
    started = time.monotonic()
    assert server.request("POST", f"/api/v1/environments/{env_id}/start", {}, token=server.token)[0] == 202
    wait_for(server, env_id, "running")
    second_start = time.monotonic() - started
    assert os.stat(cache / "blobs" / big_sha).st_ino == blob_inode
    assert sorted(p.name for p in (cache / "trees").iterdir() if p.is_dir()) == trees
    # The same stop/start of an environment without mounts: what the mount adds.
    code, plain = server.request("POST", "/api/v1/environments", {"name": "plain", "workspace_id": ws, "cpu_cores": 1,
                                                                  "memory_gib": 1}, token=server.token)
    assert code == 202, plain
    wait_for(server, plain["id"], "running")
    assert server.request("POST", f"/api/v1/environments/{plain['id']}/stop", token=server.token)[0] == 202
    wait_for(server, plain["id"], "stopped")
    started = time.monotonic()
    assert server.request("POST", f"/api/v1/environments/{plain['id']}/start", {}, token=server.token)[0] == 202
    wait_for(server, plain["id"], "running")
    plain_start = time.monotonic() - started
    print(f"second start with a cached {SIZE_MIB} MiB version: {second_start:.2f}s; without mounts: {plain_start:.2f}s")
    assert second_start - plain_start < 5  # nothing downloaded again (a loaded machine: no finer bound here)
    assert server.request("DELETE", f"/api/v1/environments/{plain['id']}", token=server.token)[0] == 202

    # Version 2: one file changed. Only its blob is stored; `latest` resolves to it at the next start.
    (src / "notes.txt").write_text("version two\n")
    assert asyncio.run(_push(server, "corpus", src))["number"] == 2
    store_blobs = list((server.data_dir / "storage" / "objects" / "blobs").rglob("*"))
    assert len([p for p in store_blobs if p.is_file()]) == 3
    assert server.request("POST", f"/api/v1/environments/{env_id}/stop", token=server.token)[0] == 202
    wait_for(server, env_id, "stopped")
    assert server.request("POST", f"/api/v1/environments/{env_id}/start", {}, token=server.token)[0] == 202
    wait_for(server, env_id, "running")
    container = container_of(docker, env_id)
    assert container.exec_run(["cat", "/datasets/corpus/notes.txt"]).output == b"version two\n"
    assert container.exec_run(["sha256sum", "/datasets/corpus/big.bin"]).output.decode().split()[0] == big_sha
    assert os.stat(cache / "blobs" / big_sha).st_ino == blob_inode  # the big file was not fetched again

    assert server.request("DELETE", f"/api/v1/environments/{env_id}", token=server.token)[0] == 202
    deadline = time.monotonic() + 60
    while container_of(docker, env_id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.3)
