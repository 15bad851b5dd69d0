"""Training jobs on real Docker with two agents on this machine: the server's embedded
host and a second ``remotegpu agent`` process, each with its own fake GPUs and Docker
scope. A 2-node job gets both nodes at once, its nodes meet at MASTER_ADDR over a tiny
TCP rendezvous, logs stream (``remotegpu job run`` follows them and returns the job's
exit code) and are kept; a killed node restarts the whole gang, then fails it; nothing
is left behind (containers, job networks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from docker.errors import NotFound

from tests.integration.test_environment_crash_recovery import ADMIN, wait_until
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = "remotegpu/base:latest"
GPUS = "2xNVIDIA A100-SXM4-80GB"

RENDEZVOUS = r"""
import os, socket, sys, time
rank, n = int(os.environ["NODE_RANK"]), int(os.environ["NNODES"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
print(f"rank {rank}/{n} world={os.environ['WORLD_SIZE']} per_node={os.environ['NPROC_PER_NODE']} master={addr}:{port}", flush=True)
print("hostfile:", open(os.environ["REMOTEGPU_HOSTFILE"]).read().replace(chr(10), ";"), flush=True)
if rank == 0:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    got = []
    while len(got) < n - 1:
        c, _ = s.accept(); got.append(c.recv(64).decode()); c.sendall(b"welcome"); c.close()
    print("rendezvous ok:", sorted(got), flush=True)
else:
    for _ in range(240):
        try:
            c = socket.create_connection((addr, port), timeout=2); break
        except OSError:
            time.sleep(0.25)
    else:
        print("master unreachable", flush=True); sys.exit(9)
    c.sendall(f"rank{rank}".encode()); print("master says", c.recv(64).decode(), flush=True)
"""


@contextmanager
def second_agent(server_url: str, state_dir: Path, log_path: Path, name: str, token: str, scope: str, *extra: str):
    cmd = [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server_url, "--runtime", "docker",
           "--fake-gpus", GPUS, "--state-dir", str(state_dir), "--name", name, "--docker-scope", scope, "--token", token,
           *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
    env["REMOTEGPU_LOG_LEVEL"] = "INFO"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def remove_jobs(docker, scopes: list[str]) -> None:
    for scope in scopes:
        for c in docker.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}):
            c.remove(force=True)
    for scope in scopes:
        for n in docker.networks.list(filters={"label": f"remotegpu.job_scope={scope}"}):
            n.remove()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    stamp = int(time.time())
    scope_a, scope_b = f"jobsa{stamp}", f"jobsb{stamp}"
    root = tmp_path_factory.mktemp("jobs")
    try:
        with live_server(root / "server", REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=GPUS,
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope_a,
                         REMOTEGPU_AGENT_NAME=f"box-a-{stamp}") as server:
            admin = server.login(*ADMIN)
            code, host_b = server.request("POST", "/api/v1/hosts", {"name": f"box-b-{stamp}", "allow_loopback": True}, token=admin)
            assert code == 201, host_b
            with second_agent(server.url, root / "agent-b", root / "agent-b.log", f"box-b-{stamp}", host_b["join_token"], scope_b):
                def both_ready():
                    code, hosts = server.request("GET", "/api/v1/hosts", token=admin)
                    ready = [h for h in hosts["items"] if h["status"] == "ready" and len(h["gpus"]) == 2]
                    return len(ready) == 2
                wait_until(both_ready, 60, "both hosts to be ready")
                token = server.signup("trainer")
                _, spaces = server.request("GET", "/api/v1/workspaces", token=token)
                ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
                yield server, docker, token, ws, root, (scope_a, scope_b)
    finally:
        remove_jobs(docker, [scope_a, scope_b])
        remove_scope(docker, scope_a)
        remove_scope(docker, scope_b)


def job(server, token, job_id) -> dict:
    code, body = server.request("GET", f"/api/v1/training-jobs/{job_id}", token=token)
    assert code == 200, body
    return body


def run_cli(server, token, *args, timeout=240):
    env = {**os.environ, "REMOTEGPU_URL": server.url, "REMOTEGPU_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "job", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def job_containers(docker, scopes, job_id):
    """The job's containers now. Listed sparse, then each inspected on its own: docker-py's
    full list inspects every container it listed and fails on one removed meanwhile (a
    job's nodes are removed as it ends; CI hit it)."""
    found = []
    for s in scopes:
        for listed in docker.containers.list(all=True, sparse=True,
                                             filters={"label": [f"remotegpu.job_scope={s}", f"remotegpu.job_id={job_id}"]}):
            try:
                found.append(docker.containers.get(listed.id))
            except NotFound:
                pass
    return found


def test_two_node_job_meets_at_master_addr_streams_and_keeps_logs(world):
    server, docker, token, ws, root, scopes = world
    out = run_cli(server, token, "run", "--workspace", ws, "--name", "rdzv", "--gpus", "2", "--nodes", "2",
                  "--cpus", "1", "--memory", "1", "--image", IMAGE, "--", "python3", "-c", RENDEZVOUS)
    assert out.returncode == 0, out.stdout + out.stderr
    # streamed live by the CLI, every node prefixed
    assert "[a0.n0] rendezvous ok: ['rank1']" in out.stdout, out.stdout
    assert "[a0.n1] master says welcome" in out.stdout
    assert "[a0.n0] rank 0/2 world=4 per_node=2 master=node-0:29500" in out.stdout
    assert "hostfile: node-0 slots=2;node-1 slots=2;" in out.stdout
    job_id = out.stderr.split("job ", 1)[1].split(":", 1)[0]
    done = job(server, token, job_id)
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    # both nodes were placed at once, on the two hosts
    placed = next(h for h in done["history"] if h["to"] == "starting")
    assert placed["from"] == "queued"
    assert len({e["host_id"] for e in done["exit_codes"]}) == 2
    # kept after the end
    code, logs = server.request("GET", f"/api/v1/training-jobs/{job_id}/logs", token=token)
    assert [i["node"] for i in logs["items"]] == ["a0.n0", "a0.n1"]
    # nothing left on Docker: containers and the job's network go once their logs are in
    wait_until(lambda: not job_containers(docker, scopes, job_id), 30, "job containers to be removed")
    wait_until(lambda: not docker.networks.list(names=[f"rgpu-job-{job_id}"]), 30, "the job network to be removed")


def test_cli_returns_the_exit_code_of_a_failed_job(world):
    server, docker, token, ws, root, scopes = world
    out = run_cli(server, token, "run", "--workspace", ws, "--name", "fails", "--cpus", "1", "--memory", "1",
                  "--image", IMAGE, "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "to-stdout" in out.stdout and "to-stderr" in out.stdout


def test_a_killed_node_restarts_the_gang_then_fails_it(world):
    server, docker, token, ws, root, scopes = world
    code, created = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "killed", "command": ["sh", "-c", "echo node $NODE_RANK up; sleep 600"],
        "image": IMAGE, "gpus_per_node": 2, "nodes": 2, "cpu_cores": 1, "memory_gib": 1, "max_retries": 1,
    }, token=token)
    assert code == 201, created
    job_id = created["id"]

    def running(attempt):
        j = job(server, token, job_id)
        return j if j["status"] == "running" and j["attempt"] == attempt else None

    wait_until(lambda: running(0), 90, "attempt 0 to run")
    victim = next(c for c in job_containers(docker, scopes, job_id) if c.labels["remotegpu.job_node"].endswith(".a0.n1"))
    victim.kill()
    wait_until(lambda: running(1), 90, "the whole gang to restart (attempt 1)")
    # attempt 0's healthy node was stopped too: no attempt-0 container runs any more
    wait_until(lambda: not [c for c in job_containers(docker, scopes, job_id)
                            if ".a0." in c.labels["remotegpu.job_node"] and c.status == "running"], 30, "attempt 0 stopped")
    victim = next(c for c in job_containers(docker, scopes, job_id) if c.labels["remotegpu.job_node"].endswith(".a1.n0"))
    victim.kill()
    failed = wait_until(lambda: (j := job(server, token, job_id))["status"] == "failed" and j, 60, "the job to fail")
    assert failed["exit_code"] == 137 and failed["attempt"] == 1
    assert {(e["attempt"], e["rank"]) for e in failed["exit_codes"]} >= {(0, 1), (1, 0)}
    wait_until(lambda: not job_containers(docker, scopes, job_id), 60, "every node to be removed")
    # its GPUs are free again: a new 2-node job is placed at once
    code, again = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "again", "command": ["true"], "image": IMAGE, "gpus_per_node": 2, "nodes": 2,
        "cpu_cores": 1, "memory_gib": 1}, token=token)
    assert code == 201 and again["status"] == "starting", again
    wait_until(lambda: job(server, token, again["id"])["status"] == "succeeded", 90, "the new job to succeed")
