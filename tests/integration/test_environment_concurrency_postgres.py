"""Concurrency on PostgreSQL: 20 simultaneous creates of 1 GPU on a 4-GPU fake host.

The real ``remotegpu serve`` on PostgreSQL. The host is a fake agent in this test
speaking the agent protocol over HTTP every 0.3 s (an in-memory "runtime": whatever the
server wants running, runs), so its 4 fake A100s, 64 cores and 512 GiB do not depend on
the size of the machine running the test (the embedded agent reports this machine's
real CPU count, 2 on small CI runners, which would let only 2 one-core environments
fit). 20 HTTP requests race: exactly 4 get GPUs, 16 wait, no GPU is handed out twice;
freeing GPUs then starts the waiting ones in queue order.
"""

from __future__ import annotations

import threading
import time

import pytest

from remotegpu.adapters.fleet.wire import report_to_dict
from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from remotegpu.domain.fleet.models import parse_fake_gpus
from tests.support.components import postgres_url
from tests.support.postgres import reset_schema
from tests.support.live_server import live_server

N = 20
GPUS = 4


class HttpFakeAgent(threading.Thread):
    """A perfect agent over HTTP: every beat reports running whatever the last reply wanted running."""

    def __init__(self, server, token: str, gpus):
        super().__init__(daemon=True)
        self.server, self.token, self.gpus = server, token, gpus
        self.observed: dict[str, tuple[str, int]] = {}
        self.stop = threading.Event()
        self.errors: list[str] = []

    def report(self) -> dict:
        return report_to_dict(HostReport(
            gpus=self.gpus, cpu_cores=64, memory_gib=512, disk_gib=1000, runtime="memory", runtime_healthy=True,
            fake_gpus=True, observed=[ObservedEnvironment(i, s, g) for i, (s, g) in sorted(self.observed.items())],
        ))

    def run(self) -> None:
        while not self.stop.is_set():
            code, reply = self.server.request("POST", "/api/v1/agent/heartbeat", self.report(), token=self.token)
            if code != 200:
                self.errors.append(f"{code} {reply}")
            else:
                self.observed = {
                    d["env_id"]: ("running" if d["desired"] == "running" else "stopped", d["generation"])
                    for d in reply["desired"] if d["desired"] != "deleted"
                }
            self.stop.wait(0.3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = postgres_url()
    reset_schema(url)
    with live_server(
        tmp_path_factory.mktemp("pg-concurrency"), REMOTEGPU_DATABASE_URL=url, REMOTEGPU_EMBEDDED_AGENT="false",
        REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5",
    ) as srv:
        srv.admin = srv.login("admin", "admin-password-123")
        code, host = srv.request("POST", "/api/v1/hosts", {"name": "pg-host"}, token=srv.admin)
        assert code == 201, host
        agent = HttpFakeAgent(srv, "", parse_fake_gpus(f"{GPUS}xNVIDIA A100-SXM4-80GB", seed="pg-host"))
        code, registered = srv.request(
            "POST", "/api/v1/agent/register", {"join_token": host["join_token"], "name": "pg-host", "report": agent.report()}
        )
        assert code == 201, registered
        agent.token = registered["agent_token"]
        agent.start()
        assert free_gpus(srv) == GPUS
        yield srv
        agent.stop.set()
        agent.join(10)
        assert agent.errors == []
        assert "Traceback" not in srv.log_path.read_text(), srv.log_path.read_text()[-3000:]


def free_gpus(server) -> int:
    code, body = server.request("GET", "/api/v1/gpu-types", token=server.admin)
    assert code == 200, body
    return sum(t["free"] for t in body["items"])


def envs(server, token: str, status: str | None = None) -> list[dict]:
    code, body = server.request("GET", "/api/v1/environments?limit=500" + (f"&status={status}" if status else ""), token=token)
    assert code == 200, body
    return body["items"]


def wait_until(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_twenty_simultaneous_creates_on_four_gpus_then_fifo(server):
    token = server.signup("racer")
    code, ws = server.request("GET", "/api/v1/workspaces", token=token)
    ws_id = ws["items"][0]["id"]
    # 20 environments pass the default quotas: lift them (this test is about placement, not quotas).
    code, me = server.request("GET", "/api/v1/users/me", token=token)
    assert server.request("PUT", f"/api/v1/workspaces/{ws_id}/quota", {}, token=server.admin)[0] == 200
    assert server.request("PUT", f"/api/v1/users/{me['id']}/quota", {}, token=server.admin)[0] == 200

    barrier = threading.Barrier(N)
    answers: list[tuple[int, dict]] = [None] * N  # type: ignore[list-item]

    def create(i: int) -> None:
        barrier.wait()
        answers[i] = server.request(
            "POST", "/api/v1/environments",
            {"name": f"race-{i}", "workspace_id": ws_id, "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}, token=token,
        )

    threads = [threading.Thread(target=create, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(code == 202 for code, _ in answers), [a for a in answers if a[0] != 202]
    placed = [body for _, body in answers if body["status"] in ("starting", "running")]
    waiting = [body for _, body in answers if body["status"] == "queued"]
    assert (len(placed), len(waiting)) == (GPUS, N - GPUS), [b["status"] for _, b in answers]

    # What the server holds agrees: 4 starting/running with 4 distinct GPUs, 16 queued 1..16.
    listed = envs(server, token)
    assert len(listed) == N
    active = [e for e in listed if e["status"] in ("starting", "running")]
    queued = [e for e in listed if e["status"] == "queued"]
    assert len(active) == GPUS and len(queued) == N - GPUS
    uuids = [g["uuid"] for e in active for g in e["gpus"]]
    assert len(uuids) == GPUS and len(set(uuids)) == GPUS
    assert all(e["gpus"] == [] and e["host_id"] is None for e in queued)
    assert sorted(e["queue_position"] for e in queued) == list(range(1, N - GPUS + 1))
    assert free_gpus(server) == 0
    code, hosts = server.request("GET", "/api/v1/hosts", token=server.admin)
    assert sum(g["allocated"] for g in hosts["items"][0]["gpus"]) == GPUS

    # The agent starts them.
    wait_until(lambda: len(envs(server, token, "running")) == GPUS, what="4 running")

    # Freeing GPUs starts the waiting ones strictly in queue order.
    order = [e["id"] for e in sorted(queued, key=lambda e: e["queue_position"])]
    started: list[str] = []
    running = [e["id"] for e in envs(server, token, "running")]
    while order:
        victim = running.pop(0)
        code, body = server.request("DELETE", f"/api/v1/environments/{victim}", token=token)
        assert code == 202, body
        head = order.pop(0)
        env = wait_until(lambda: (e := server.request("GET", f"/api/v1/environments/{head}", token=token)[1])
                         and e["status"] in ("starting", "running") and e, what=f"{head} to start")
        assert len(env["gpus"]) == 1
        for later in order:  # nobody behind it jumped ahead
            code, e = server.request("GET", f"/api/v1/environments/{later}", token=token)
            assert e["status"] == "queued", e
        if order:
            code, e = server.request("GET", f"/api/v1/environments/{order[0]}", token=token)
            assert e["queue_position"] == 1
        started.append(head)
        running.append(head)
    assert len(started) == N - GPUS

    # Never a GPU twice, and everything settles running.
    final = wait_until(
        lambda: (f := envs(server, token)) and len(f) == GPUS and all(e["status"] == "running" for e in f) and f,
        what="the deleted gone and the last 4 running",
    )
    uuids = [g["uuid"] for e in final for g in e["gpus"]]
    assert len(set(uuids)) == GPUS == len(uuids)
    assert {e["id"] for e in final} == set(started[-GPUS:])
    for env in final:
        code, body = server.request("DELETE", f"/api/v1/environments/{env['id']}", token=token)
        assert code == 202
    wait_until(lambda: free_gpus(server) == GPUS and not envs(server, token), what="everything deleted")
