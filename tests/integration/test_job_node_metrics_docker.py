"""Container CPU, memory and network series of training-job nodes, on real Docker with
two agents (the embedded host and a second ``remotegpu agent`` process, metrics every
second): node 1 streams bytes to node 0 over the job's network while both burn CPU and
hold memory; each agent's collector reads its node's container counters and the
server tags them with the job, so ``/api/v1/metrics?scope=job`` (and ``/history``)
shows one series per node (per host) to whoever may see the job; another tenant: 404."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_environment_crash_recovery import ADMIN, wait_until
from tests.integration.test_training_jobs_docker import GPUS, IMAGE, job_containers, remove_jobs, second_agent
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

MiB = 1024 * 1024
WORKLOAD = r"""
import os, socket, time
rank, port = int(os.environ["NODE_RANK"]), int(os.environ["MASTER_PORT"])
held = bytearray(160 * 1024 * 1024)  # memory the node holds
for i in range(0, len(held), 4096):
    held[i] = 1
def burn(seconds):
    end = time.time() + seconds
    while time.time() < end:
        sum(range(20000))
if rank == 0:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    c, _ = s.accept()
    got = 0
    while True:
        data = c.recv(1 << 20)
        if not data:
            break
        got += len(data)
        burn(0.15)
    print("received", got, flush=True)
else:
    for _ in range(240):
        try:
            c = socket.create_connection((os.environ["MASTER_ADDR"], port), timeout=2); break
        except OSError:
            time.sleep(0.25)
    chunk = b"x" * (1 << 20)
    for _ in range(10):  # 4 MiB a second for 10 s
        for _ in range(4):
            c.sendall(chunk)
        burn(1.0)
    c.close()
    print("sent", flush=True)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    stamp = int(time.time())
    scope_a, scope_b = f"metja{stamp}", f"metjb{stamp}"
    root = tmp_path_factory.mktemp("jobmetrics")
    try:
        with live_server(root / "server", REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=GPUS,
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_METRICS_INTERVAL_SECONDS="1",
                         REMOTEGPU_DOCKER_SCOPE=scope_a, REMOTEGPU_AGENT_NAME=f"met-a-{stamp}") as server:
            admin = server.login(*ADMIN)
            code, host_b = server.request("POST", "/api/v1/hosts", {"name": f"met-b-{stamp}", "allow_loopback": True}, token=admin)
            assert code == 201, host_b
            with second_agent(server.url, root / "agent-b", root / "agent-b.log", f"met-b-{stamp}", host_b["join_token"],
                              scope_b, "--metrics-interval", "1"):
                def both_ready():
                    _, hosts = server.request("GET", "/api/v1/hosts", token=admin)
                    return len([h for h in hosts["items"] if h["status"] == "ready" and len(h["gpus"]) == 2]) == 2
                wait_until(both_ready, 60, "both hosts to be ready")
                token = server.signup("watcher")
                _, spaces = server.request("GET", "/api/v1/workspaces", token=token)
                ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
                yield server, docker, token, ws, (scope_a, scope_b)
    finally:
        remove_jobs(docker, [scope_a, scope_b])
        remove_scope(docker, scope_a)
        remove_scope(docker, scope_b)


def _peak(server, token, job_id, metric) -> dict[str, float]:
    """host id → the highest value of the job's series of ``metric`` (1 s steps)."""
    code, body = server.request("GET", f"/api/v1/metrics/history?scope=job&id={job_id}&metric={metric}&step=1", token=token)
    assert code == 200, body
    return {s["host_id"]: max((p["max"] for p in s["points"]), default=0.0) for s in body["series"]
            if s["environment_id"] == job_id}


def test_each_nodes_cpu_memory_and_network_are_series_of_the_job(world):
    server, docker, token, ws, scopes = world
    code, job = server.request("POST", "/api/v1/training-jobs", {
        "workspace_id": ws, "name": "talk", "image": IMAGE, "command": ["python3", "-c", WORKLOAD], "nodes": 2,
        "cpu_cores": 1, "memory_gib": 1}, token=token)
    assert code == 201, job

    def ended():
        _, j = server.request("GET", f"/api/v1/training-jobs/{job['id']}", token=token)
        assert j["status"] not in ("failed", "cancelled", "timed_out"), j
        return j["status"] == "succeeded"

    wait_until(ended, 180, "the job to succeed", 0.5)
    _, j = server.request("GET", f"/api/v1/training-jobs/{job['id']}", token=token)
    hosts = {e["rank"]: e["host_id"] for e in j["exit_codes"]}
    assert len(set(hosts.values())) == 2

    def all_series():  # the last batches arrive with the agents' next beats
        return all(len(_peak(server, token, job["id"], m)) == 2 for m in (
            "remotegpu_container_memory_used_mib", "remotegpu_container_cpu_cores",
            "remotegpu_container_network_rx_bytes_per_second", "remotegpu_container_network_tx_bytes_per_second"))

    wait_until(all_series, 30, "both nodes' container series", 0.5)
    memory = _peak(server, token, job["id"], "remotegpu_container_memory_used_mib")
    cpu = _peak(server, token, job["id"], "remotegpu_container_cpu_cores")
    rx = _peak(server, token, job["id"], "remotegpu_container_network_rx_bytes_per_second")
    tx = _peak(server, token, job["id"], "remotegpu_container_network_tx_bytes_per_second")
    assert all(v >= 150 for v in memory.values()), memory  # the 160 MiB each node holds
    # Both burn CPU (limit: 1 core; idle they use ~0). A low bar: the build machine's 2 cores are shared and loaded.
    assert all(v >= 0.1 for v in cpu.values()), cpu
    assert rx[hosts[0]] >= 1 * MiB and tx[hosts[1]] >= 1 * MiB, (rx, tx)  # node 1 → node 0, ~4 MiB/s
    assert rx[hosts[1]] < rx[hosts[0]] / 4 and tx[hosts[0]] < tx[hosts[1]] / 4, (rx, tx)  # per node, not summed

    code, latest = server.request("GET", f"/api/v1/metrics?scope=job&id={job['id']}&metric=remotegpu_container_memory_used_mib",
                                  token=token)
    assert code == 200 and {i["host_id"] for i in latest["items"]} == set(hosts.values()), latest
    assert {i["workspace_id"] for i in latest["items"]} == {ws}
    other = server.signup("peeker")
    code, _ = server.request("GET", f"/api/v1/metrics/history?scope=job&id={job['id']}&metric=remotegpu_container_cpu_cores",
                             token=other)
    assert code == 404
    wait_until(lambda: not job_containers(docker, scopes, job["id"]), 60, "the job's containers removed", 0.5)
