"""Billing against a real server with real Docker containers (SQLite and PostgreSQL).

``remotegpu serve`` with billing enabled, a metering pass every second, the embedded
agent running environments in Docker (fake GPU inventory). An environment runs, stops
and starts: the ledger's charges equal, to the second, the running intervals its own
event timeline shows × the prices, rounded once per segment. Then the workspace's
balance is taken to zero: the environment is stopped within a minute, its container
(its disk) is kept, and starting it again answers 409 insufficient_funds.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime

import pytest

from remotegpu.domain.billing.money import rate
from tests.integration.test_docker_environments import container_of, free_gpus, wait_for
from tests.support.components import docker_with_image, postgres_url, remove_scope
from tests.support.live_server import live_server
from tests.support.postgres import reset_schema

FAKE = "2xNVIDIA A100-SXM4-80GB"
MODEL = "NVIDIA A100-SXM4-80GB"
IMAGE = "remotegpu/base:latest"
PRICES = {"gpu": 3600, "cpu": 360, "memory": 36}  # minor units per hour: 1, 0.1, 0.01 per second


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, docker, tmp_path):
    scope = f"bill{int(time.time())}{request.param[:2]}"
    extra = {}
    if request.param == "postgres":
        url = postgres_url()
        reset_schema(url)
        extra["REMOTEGPU_DATABASE_URL"] = url
    try:
        with live_server(
            tmp_path / "srv", REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE, REMOTEGPU_HEARTBEAT_SECONDS="1",
            REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_BILLING_ENABLED="true",
            REMOTEGPU_BILLING_TICK_SECONDS="1", **extra,
        ) as srv:
            srv.token = srv.login("admin", "admin-password-123")
            deadline = time.monotonic() + 60
            while free_gpus(srv) != 2:
                assert time.monotonic() < deadline, "the embedded agent's host did not show up"
                time.sleep(0.2)
            yield srv
            assert "Traceback" not in srv.log_path.read_text(), srv.log_path.read_text()[-3000:]
    finally:
        remove_scope(docker, scope)


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _running_seconds(events: list[dict], until: int) -> list[int]:
    """Running intervals, to the second, from the environment's own timeline."""
    out, since = [], None
    for e in sorted(events, key=lambda e: e["at"]):
        if e["to_status"] == "running" and since is None:
            since = _ts(e["at"])
        elif e["to_status"] != "running" and since is not None:
            out.append(_ts(e["at"]) - since)
            since = None
    if since is not None:
        out.append(until - since)
    return out


def _charges(server, ws: str) -> int:
    code, page = server.request("GET", f"/api/v1/billing/wallet/entries?workspace_id={ws}&limit=500", token=server.token)
    assert code == 200, page
    return -sum(e["amount"] for e in page["items"] if e["kind"] == "charge")


def test_docker_environment_is_charged_to_the_second_and_stopped_at_zero_keeping_its_disk(server, docker):
    t = server.token
    ws = server.request("GET", "/api/v1/workspaces", token=t)[1]["items"][0]["id"]
    for kind, price in PRICES.items():
        body = {"kind": kind, "unit_price": price, **({"model": MODEL} if kind == "gpu" else {})}
        code, out = server.request("POST", "/api/v1/billing/prices", body, token=t)
        assert code == 201, out
    gpu_types = server.request("GET", "/api/v1/gpu-types", token=t)[1]["items"]
    assert [g["hourly_price"] for g in gpu_types] == [3600]
    spec = {"name": "billed", "workspace_id": ws, "gpu_count": 1, "gpu_model": MODEL, "cpu_cores": 1, "memory_gib": 1}
    code, refused = server.request("POST", "/api/v1/environments", spec, token=t)
    assert code == 409 and refused["error"]["code"] == "insufficient_funds", refused
    assert refused["error"]["details"]["hourly_price"] == 3600 + 360 + 36
    code, entry = server.request("POST", "/api/v1/billing/wallet/entries",
                                 {"workspace_id": ws, "kind": "topup", "amount": 1_000_000, "reason": "transfer", "reference": "t1"},
                                 token=t)
    assert code == 201, entry

    code, env = server.request("POST", "/api/v1/environments", spec, token=t)
    assert code == 202, env
    env_id = env["id"]
    wait_for(server, env_id, "running")
    time.sleep(3)
    assert server.request("POST", f"/api/v1/environments/{env_id}/stop", token=t)[0] == 202
    wait_for(server, env_id, "stopped")
    time.sleep(2)
    assert server.request("POST", f"/api/v1/environments/{env_id}/start", token=t)[0] == 202
    wait_for(server, env_id, "running")
    time.sleep(2)
    assert server.request("POST", f"/api/v1/environments/{env_id}/stop", token=t)[0] == 202
    wait_for(server, env_id, "stopped")

    # Both runs are closed: what a pass charged for them is exact (no disk price: only compute).
    events = server.request("GET", f"/api/v1/environments/{env_id}/events?limit=100", token=t)[1]["items"]
    runs = _running_seconds(events, 0)
    assert len(runs) == 2 and all(r >= 1 for r in runs), events
    expected = sum(rate(1, PRICES["gpu"], r, 3600) + rate(1, PRICES["cpu"], r, 3600) + rate(1, PRICES["memory"], r, 3600)
                   for r in runs)
    deadline = time.monotonic() + 30
    while _charges(server, ws) != expected:
        assert time.monotonic() < deadline, (_charges(server, ws), expected, runs)
        time.sleep(0.5)
    bill = server.request("GET", f"/api/v1/billing/bills/{events[0]['at'][:7]}?workspace_id={ws}", token=t)[1]
    assert bill["total"] == bill["charged"] == expected
    assert sum(line["seconds"] for line in bill["lines"] if line["kind"] == "gpu") == sum(runs)
    req = urllib.request.Request(server.url + f"/api/v1/billing/bills/{events[0]['at'][:7]}/csv?workspace_id={ws}",
                                 headers={"Authorization": f"Bearer {t}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert resp.read().decode().splitlines()[-1].endswith(f",total,,,,,{expected}")

    # Running again, then the balance goes to zero: stopped within a minute, disk kept.
    assert server.request("POST", f"/api/v1/environments/{env_id}/start", token=t)[0] == 202
    wait_for(server, env_id, "running")
    container_id = container_of(docker, env_id).id
    balance = server.request("GET", f"/api/v1/billing/wallet?workspace_id={ws}", token=t)[1]["balance"]
    code, _ = server.request("POST", "/api/v1/billing/wallet/entries",
                             {"workspace_id": ws, "kind": "adjustment", "amount": -balance, "reason": "drain"}, token=t)
    assert code == 201
    drained = time.monotonic()
    wait_for(server, env_id, "stopped", timeout=60)
    assert time.monotonic() - drained < 60
    events = server.request("GET", f"/api/v1/environments/{env_id}/events?limit=100", token=t)[1]["items"]
    assert any(e["to_status"] == "stopping" and "arrears" in e["reason"] for e in events), events  # the event says why
    assert free_gpus(server) == 2  # GPUs released
    kept = container_of(docker, env_id)
    assert kept is not None and kept.id == container_id  # its disk (container and volume) is kept
    code, again = server.request("POST", f"/api/v1/environments/{env_id}/start", token=t)
    assert code == 409 and again["error"]["code"] == "insufficient_funds"
    # Delete: nothing left behind.
    assert server.request("DELETE", f"/api/v1/environments/{env_id}", token=t)[0] in (200, 202)
    deadline = time.monotonic() + 60
    while container_of(docker, env_id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.3)
