"""The reported stall, on the real server process with its in-process agent.

Two environments fill the host's CPU (1 core + 1 fake GPU each on a 2-core host;
elsewhere the same shape scaled to the host's cores), two more wait. Deleting a
running one starts a queued one in the DELETE's own transaction: it is ``starting``
as soon as the DELETE has answered (it used to stay ``queued`` for 40+ s, until
some unrelated event), and the agent then runs it.
"""

from __future__ import annotations

import time

import pytest

from tests.support.live_server import live_server

A100 = "NVIDIA A100-SXM4-80GB"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(
        tmp_path_factory.mktemp("queue-live"), REMOTEGPU_AGENT_FAKE_GPUS=f"4x{A100}",
        REMOTEGPU_DEFAULT_QUOTA_CPU_CORES="100000", REMOTEGPU_USER_QUOTA_CPU_CORES="100000",
    ) as srv:
        yield srv


def wait_for(server, token: str, env_id: str, statuses: set[str], seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds  # generous: only a stall would run into it
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=token)
        assert code == 200, env
        if env["status"] in statuses or time.monotonic() > deadline:
            return env["status"]
        time.sleep(0.2)


def test_deleting_a_running_environment_lets_a_queued_one_start_at_once(server):
    admin = server.login("admin", "admin-password-123")
    deadline = time.monotonic() + 30
    while True:  # the embedded host exists at once; its inventory comes with the agent's first report
        code, hosts = server.request("GET", "/api/v1/hosts", token=admin)
        assert code == 200 and len(hosts["items"]) == 1, hosts
        host = hosts["items"][0]
        if host["cpu_cores"] > 0 and host["status"] == "ready":
            break
        assert time.monotonic() < deadline, f"the embedded host never reported: {host}"
        time.sleep(0.1)
    cores = host["cpu_cores"]
    # Two requests of `per_env` cores fill the host exactly (overcommit makes an odd count even).
    per_env = (cores + 1) // 2
    if 2 * per_env != cores:
        code, host = server.request("PATCH", f"/api/v1/hosts/{host['id']}", {"cpu_overcommit": 2 * per_env / cores}, token=admin)
        assert code == 200 and host["schedulable_cpu_cores"] == 2 * per_env, host

    user = server.signup("queuer")
    code, me = server.request("GET", "/api/v1/workspaces", token=user)
    workspace = next(w for w in me["items"] if w["is_personal"])["id"]
    ids = []
    for i in range(4):
        code, env = server.request("POST", "/api/v1/environments", {
            "name": f"q{i}", "workspace_id": workspace, "gpu_count": 1, "gpu_model": A100,
            "cpu_cores": per_env, "memory_gib": 1, "disk_gib": 1,
        }, token=user)
        assert code in (201, 202), env
        ids.append(env["id"])
    assert [wait_for(server, user, i, {"running"}) for i in ids[:2]] == ["running", "running"]
    code, waiting = server.request("GET", f"/api/v1/environments/{ids[2]}", token=user)
    assert waiting["status"] == "queued" and f"{per_env} vCPU" in waiting["status_message"], waiting

    code, body = server.request("DELETE", f"/api/v1/environments/{ids[0]}", token=user)
    assert code in (200, 202, 204), body
    code, placed = server.request("GET", f"/api/v1/environments/{ids[2]}", token=user)
    assert placed["status"] in ("starting", "running"), placed  # placed by the DELETE itself
    assert wait_for(server, user, ids[2], {"running"}) == "running"
    code, last = server.request("GET", f"/api/v1/environments/{ids[3]}", token=user)
    assert last["status"] == "queued", last
    for env_id in ids[1:]:
        server.request("DELETE", f"/api/v1/environments/{env_id}", token=user)
