"""A training job's output becomes a model version: real Docker, two agents (the
server's embedded host and a second ``remotegpu agent`` process over HTTP), and the S3
object store adapter on moto's server (as the storage tests use it).

A 2-node job declares ``output: {model, /output}``; node 0 writes files there; when the
job succeeds node 0's agent copies the directory out of the exited container and the
platform makes the model's next version from it, its source the job. A failed job makes
no version; an output path that does not exist fails the output, not the job; another
workspace's model is refused with 404 before anything is queued; nothing is left."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.integration.test_environment_crash_recovery import ADMIN, wait_until
from tests.integration.test_training_jobs_docker import GPUS, IMAGE, job_containers, remove_jobs, second_agent
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server
from tests.support.s3servers import s3_server

WRITER = r"""
import os, pathlib
rank = int(os.environ["NODE_RANK"])
out = pathlib.Path("/output")
(out / "nested").mkdir(parents=True, exist_ok=True)
if rank == 0:
    (out / "weights.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (out / "nested" / "metrics.json").write_text('{"loss": 0.125}')
    os.symlink("/etc/passwd", out / "link-to-passwd")  # not a regular file: left out
else:
    (out / "from-rank-1.txt").write_text("node 1 is not the output")
print("wrote output on rank", rank, flush=True)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    stamp = int(time.time())
    scope_a, scope_b = f"outa{stamp}", f"outb{stamp}"
    root = tmp_path_factory.mktemp("outputs")
    try:
        with s3_server("moto") as s3, live_server(
                root / "server", REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=GPUS, REMOTEGPU_HEARTBEAT_SECONDS="1",
                REMOTEGPU_DOCKER_SCOPE=scope_a, REMOTEGPU_AGENT_NAME=f"out-a-{stamp}",
                REMOTEGPU_STORAGE_BACKEND="s3", REMOTEGPU_S3_ENDPOINT=s3.endpoint,
                REMOTEGPU_S3_BUCKET=f"rgpu-{uuid.uuid4().hex[:10]}", REMOTEGPU_S3_ACCESS_KEY=s3.access_key,
                REMOTEGPU_S3_SECRET_KEY=s3.secret_key, REMOTEGPU_S3_REGION=s3.region, REMOTEGPU_S3_ADDRESSING="path") as server:
            admin = server.login(*ADMIN)
            code, host_b = server.request("POST", "/api/v1/hosts", {"name": f"out-b-{stamp}", "allow_loopback": True}, token=admin)
            assert code == 201, host_b
            with second_agent(server.url, root / "agent-b", root / "agent-b.log", f"out-b-{stamp}", host_b["join_token"], scope_b):
                def both_ready():
                    _, hosts = server.request("GET", "/api/v1/hosts", token=admin)
                    return len([h for h in hosts["items"] if h["status"] == "ready" and len(h["gpus"]) == 2]) == 2
                wait_until(both_ready, 60, "both hosts to be ready")
                token = server.signup("modeller")
                _, spaces = server.request("GET", "/api/v1/workspaces", token=token)
                ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
                code, model = server.request("POST", "/api/v1/models", {"workspace_id": ws, "name": "trained"}, token=token)
                assert code == 201, model
                yield server, docker, token, ws, model, (scope_a, scope_b)
    finally:
        remove_jobs(docker, [scope_a, scope_b])
        remove_scope(docker, scope_a)
        remove_scope(docker, scope_b)


def _create(server, token, ws, name, command, **extra):
    code, job = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": name, "image": IMAGE, "command": command, "cpu_cores": 1, "memory_gib": 1, **extra},
        token=token)
    assert code == 201, job
    return job


def _ended(server, token, job_id, *, output_settled=True):
    def check():
        _, j = server.request("GET", f"/api/v1/training-jobs/{job_id}", token=token)
        ended = j["status"] in ("succeeded", "failed", "cancelled", "timed_out")
        return ended and (not output_settled or j["output"]["state"] not in ("waiting", "collecting"))

    wait_until(check, 180, f"job {job_id} to end", 0.5)
    _, j = server.request("GET", f"/api/v1/training-jobs/{job_id}", token=token)
    return j


def _download(server, token, model_id, number, path) -> bytes:
    req = urllib.request.Request(f"{server.url}/api/v1/models/{model_id}/versions/{number}/file?path={path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def test_a_succeeded_two_node_job_output_becomes_a_model_version_with_the_job_as_source(world):
    server, docker, token, ws, model, scopes = world
    job = _create(server, token, ws, "train-out", ["python3", "-c", WRITER], nodes=2,
                  output={"kind": "model", "name": "trained", "path": "/output/"})
    assert job["output"] == {"kind": "model", "repository_id": model["id"], "name": "trained", "path": "/output",
                             "state": "waiting", "version": None, "message": ""}
    j = _ended(server, token, job["id"])
    assert j["status"] == "succeeded", j
    assert j["output"]["state"] == "done" and j["output"]["version"] == 1, j["output"]
    hosts = {e["rank"]: e["host_id"] for e in j["exit_codes"]}
    assert len(set(hosts.values())) == 2  # one node per agent

    code, version = server.request("GET", f"/api/v1/models/{model['id']}/versions/1", token=token)
    assert code == 200, version
    assert version["source"] == {"kind": "job", "id": job["id"]}
    files = {f["path"]: f for f in version["files"]}
    assert sorted(files) == ["nested/metrics.json", "weights.bin"], files  # node 0's only; no symlink
    weights = bytes(range(256)) * 4096
    assert files["weights.bin"]["size"] == len(weights)
    assert files["weights.bin"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert _download(server, token, model["id"], 1, "weights.bin") == weights  # from the S3 store
    assert json.loads(_download(server, token, model["id"], 1, "nested/metrics.json")) == {"loss": 0.125}
    # node 0's container was kept for the copy, then removed like the others
    wait_until(lambda: not job_containers(docker, scopes, job["id"]), 60, "the job's containers removed", 0.5)


def test_a_failed_job_makes_no_version_and_a_missing_path_fails_only_the_output(world):
    server, docker, token, ws, model, scopes = world
    _, before = server.request("GET", f"/api/v1/models/{model['id']}/versions", token=token)

    failed = _create(server, token, ws, "train-fails", ["sh", "-c", "mkdir -p /output && echo x > /output/w && exit 3"],
                     output={"name": model["id"]})  # by id works too
    j = _ended(server, token, failed["id"])
    assert j["status"] == "failed" and j["exit_code"] == 3, j
    assert j["output"]["state"] == "skipped" and j["output"]["version"] is None, j["output"]

    nothing = _create(server, token, ws, "train-no-dir", ["true"], output={"name": "trained", "path": "/no/such/dir"})
    j = _ended(server, token, nothing["id"])
    assert j["status"] == "succeeded", j
    assert j["output"]["state"] == "failed" and "does not exist" in j["output"]["message"], j["output"]

    _, after = server.request("GET", f"/api/v1/models/{model['id']}/versions", token=token)
    assert after == before
    for job_id in (failed["id"], nothing["id"]):
        wait_until(lambda: not job_containers(docker, scopes, job_id), 60, "the job's containers removed", 0.5)


def test_another_workspaces_model_is_refused_with_404_and_the_agent_endpoint_is_guarded(world):
    server, docker, token, ws, model, scopes = world
    other = server.signup("stranger")
    _, spaces = server.request("GET", "/api/v1/workspaces", token=other)
    other_ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
    code, body = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": other_ws, "name": "steal", "image": IMAGE, "command": ["true"],
        "output": {"kind": "model", "name": model["id"]}}, token=other)
    assert code == 404, body
    code, body = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": other_ws, "name": "steal", "image": IMAGE, "command": ["true"],
        "output": {"kind": "model", "name": "trained"}}, token=other)  # by name: their workspace has none
    assert code == 404, body
    _, listed = server.request("GET", f"/api/v1/training-jobs?workspace_id={other_ws}", token=other)
    assert listed["total"] == 0
    code, body = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "bad-path", "image": IMAGE, "command": ["true"],
        "output": {"name": "trained", "path": "/a/../b"}}, token=token)
    assert code == 422 and body["error"]["details"]["field"] == "output.path", body

    req = urllib.request.Request(f"{server.url}/api/v1/agent/job-outputs/x.a0.n0", data=b"", method="POST",
                                 headers={"Authorization": "Bearer not-an-agent-token", "Content-Type": "application/x-tar"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401


def test_both_agents_send_outputs_the_embedded_one_in_process_the_remote_one_over_http(world):
    """Two 1-node jobs holding both GPUs of a host each run at once, one per host: the
    embedded agent's output goes in-process, the second agent's through the HTTP endpoint."""
    server, docker, token, ws, model, scopes = world
    jobs = [_create(server, token, ws, f"each-{i}", ["sh", "-c", f"sleep 2; mkdir -p /out && echo run-{i} > /out/who.txt"],
                    gpus_per_node=2, output={"name": "trained", "path": "/out"}) for i in range(2)]
    ended = [_ended(server, token, j["id"]) for j in jobs]
    assert [j["status"] for j in ended] == ["succeeded", "succeeded"], ended
    assert len({j["exit_codes"][0]["host_id"] for j in ended}) == 2  # one on each agent
    for i, j in enumerate(ended):
        assert j["output"]["state"] == "done", j["output"]
        number = j["output"]["version"]
        code, version = server.request("GET", f"/api/v1/models/{model['id']}/versions/{number}", token=token)
        assert version["source"] == {"kind": "job", "id": j["id"]}
        assert [f["path"] for f in version["files"]] == ["who.txt"]
        assert _download(server, token, model["id"], number, "who.txt") == f"run-{i}\n".encode()
    for j in jobs:
        wait_until(lambda: not job_containers(docker, scopes, j["id"]), 60, "the job's containers removed", 0.5)


def test_the_cli_names_the_version_the_output_became(world):
    from tests.integration.test_training_jobs_docker import run_cli

    server, docker, token, ws, model, scopes = world
    done = run_cli(server, token, "run", "--name", "cli-out", "--image", IMAGE, "--cpus", "1", "--memory", "1",
                   "--workspace", ws, "--output", "trained", "--output-path", "/out",
                   "--", "sh", "-c", "mkdir -p /out && echo from-cli > /out/c.txt")
    assert done.returncode == 0, done.stderr
    assert "output: model trained version" in done.stderr, done.stderr
    number = int(done.stderr.split("output: model trained version ")[1].split()[0])
    assert _download(server, token, model["id"], number, "c.txt") == b"from-cli\n"
    missing = run_cli(server, token, "run", "--name", "cli-none", "--image", IMAGE, "--cpus", "1", "--memory", "1",
                      "--workspace", ws, "--output", "trained", "--", "true")
    assert missing.returncode == 1 and "output not stored" in missing.stderr, missing.stderr
