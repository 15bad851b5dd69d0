"""Dataset mounts in training jobs and inference replicas, on real Docker through the API:
the version is materialized in the embedded agent's host cache (as for environments)
and bound read-only at /datasets/<name>; a mount that does not resolve is refused at
create (422), before anything is queued; nothing left."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import aiohttp
import pytest

from remotegpu.entrypoints import storage_cli
from tests.integration.test_environment_crash_recovery import wait_until
from tests.integration.test_training_jobs_docker import remove_jobs
from tests.support.app_hosts import LoopbackResolver
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = "remotegpu/base:latest"
READER = r"""
import os, sys
path = "/datasets/corpus/words.txt"
print("read:", open(path).read().strip())
try:
    open(path, "a").write("x")
    print("writable")
except OSError as exc:
    print("read-only:", exc.errno)
"""
SERVER = r"""
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/datasets/corpus/words.txt", "rb").read()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    scope = f"wm{int(time.time())}"
    try:
        with live_server(tmp_path_factory.mktemp("wm"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"wm-{scope}") as server:
            token = server.login("admin", "admin-password-123")
            yield server, docker, token, scope
    finally:
        remove_jobs(docker, [scope])
        remove_scope(docker, scope)


def _push(server, token, directory) -> tuple[str, dict]:
    async def run():
        async with aiohttp.ClientSession() as session:
            api = storage_cli.Api(server.url, token, session)
            ws = await api.workspace(None)
            await api.call("POST", "/api/v1/datasets", json_body={"workspace_id": ws, "name": "corpus"})
            repo = await api.repository("dataset", ws, "corpus")
            return ws, await storage_cli.push(api, "dataset", repo, directory, part_size_mib=8, quiet=True)

    return asyncio.run(run())


def test_a_job_and_a_replica_read_a_mounted_dataset(world, tmp_path):
    server, docker, token, scope = world
    (tmp_path / "words.txt").write_text("alpha beta gamma\n")
    ws, _ = _push(server, token, tmp_path)

    # unknown dataset: refused at create, nothing queued
    code, body = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "nope", "image": IMAGE, "command": ["true"],
        "mounts": [{"kind": "dataset", "name": "no-such-dataset"}]}, token=token)
    assert code == 422 and body["error"]["code"] == "mount_not_found", body
    _, listed = server.request("GET", f"/api/v1/training-jobs?workspace_id={ws}", token=token)
    assert listed["total"] == 0

    code, job = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "reader", "image": IMAGE, "command": ["python3", "-c", READER], "cpu_cores": 1,
        "memory_gib": 1, "mounts": [{"kind": "dataset", "name": "corpus"}]}, token=token)
    assert code == 201, job
    assert job["mounts"] == [{"kind": "dataset", "repository_id": job["mounts"][0]["repository_id"], "name": "corpus",
                              "version": "latest", "path": "/datasets/corpus"}]

    def status():
        _, j = server.request("GET", f"/api/v1/training-jobs/{job['id']}", token=token)
        assert j["status"] not in ("failed", "timed_out", "cancelled"), j
        return j["status"] == "succeeded"

    wait_until(status, 120, "the job to succeed", 0.5)
    req = urllib.request.Request(f"{server.url}/api/v1/training-jobs/{job['id']}/logs/a0.n0",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        log = resp.read().decode()
    assert "read: alpha beta gamma" in log and "read-only: 30" in log, log  # EROFS

    # an inference replica with the same mount serves the file
    code, svc = server.request("POST", "/api/v1/inference-services", {
        "workspace_id": ws, "name": "files", "image": IMAGE, "command": ["python3", "-c", SERVER], "port": 8000,
        "min_replicas": 1, "max_replicas": 1, "public": True, "mounts": [{"kind": "dataset", "name": "corpus"}]}, token=token)
    assert code == 201, svc
    assert [m["path"] for m in svc["mounts"]] == ["/datasets/corpus"]
    port = server.url.rsplit(":", 1)[1]

    async def fetch():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver())) as http:
            async with http.get(f"http://{svc['id']}--serve.localhost:{port}/", timeout=aiohttp.ClientTimeout(total=150)) as r:
                return r.status, await r.text()

    assert asyncio.run(fetch()) == (200, "alpha beta gamma\n")
    code, _ = server.request("DELETE", f"/api/v1/inference-services/{svc['id']}", token=token)
    assert code == 204
    wait_until(lambda: not docker.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}), 60,
               "job and replica containers removed", 0.5)
