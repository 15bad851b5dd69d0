"""Quotas and invitations hold under concurrent requests on PostgreSQL (the real server).

Racing HTTP requests (threads released by one barrier) against ``remotegpu serve`` on
PostgreSQL, with a fake agent over HTTP so no container runs: a per-user cap across
several workspaces admits exactly what it allows, max owned workspaces is never passed,
and of concurrent answers to one invitation exactly one wins.
"""

from __future__ import annotations

import threading

import pytest

from remotegpu.domain.fleet.models import parse_fake_gpus
from tests.integration.test_environment_concurrency_postgres import HttpFakeAgent
from tests.support.components import postgres_url
from tests.support.live_server import live_server
from tests.support.postgres import reset_schema


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = postgres_url()
    reset_schema(url)
    with live_server(
        tmp_path_factory.mktemp("pg-quotas"), REMOTEGPU_DATABASE_URL=url, REMOTEGPU_EMBEDDED_AGENT="false",
        REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5",
    ) as srv:
        srv.admin = srv.login("admin", "admin-password-123")
        code, host = srv.request("POST", "/api/v1/hosts", {"name": "pg-quota-host"}, token=srv.admin)
        assert code == 201, host
        agent = HttpFakeAgent(srv, "", parse_fake_gpus("8xNVIDIA A100-SXM4-80GB", seed="pg-quota-host"))
        code, registered = srv.request(
            "POST", "/api/v1/agent/register", {"join_token": host["join_token"], "name": "pg-quota-host", "report": agent.report()}
        )
        assert code == 201, registered
        agent.token = registered["agent_token"]
        agent.start()
        yield srv
        agent.stop.set()
        agent.join(10)
        assert agent.errors == []
        assert "Traceback" not in srv.log_path.read_text(), srv.log_path.read_text()[-3000:]


def race(calls) -> list[tuple[int, dict]]:
    """Run the calls at once (a barrier releases them together); their (status, body) in order."""
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def user_id(server, token: str) -> str:
    return server.request("GET", "/api/v1/users/me", token=token)[1]["id"]


def test_a_users_cap_across_their_workspaces_holds_under_concurrent_creates(server):
    token = server.signup("capped")
    uid = user_id(server, token)
    code, cap = server.request("PUT", f"/api/v1/users/{uid}/quota", {"max_gpus": 2}, token=server.admin)
    assert code == 200, cap
    workspaces = [server.request("GET", "/api/v1/workspaces", token=token)[1]["items"][0]["id"]]
    for name in ("one", "two"):
        code, ws = server.request("POST", "/api/v1/workspaces", {"name": name}, token=token)
        assert code == 201, ws
        workspaces.append(ws["id"])

    def create(i: int):
        body = {"name": f"r{i}", "workspace_id": workspaces[i % 3], "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}
        return lambda: server.request("POST", "/api/v1/environments", body, token=token)

    answers = race([create(i) for i in range(12)])
    accepted = [body for code, body in answers if code == 202]
    refused = [body for code, body in answers if code == 409]
    assert (len(accepted), len(refused)) == (2, 10), [code for code, _ in answers]
    assert all(b["error"]["code"] == "quota_exceeded" and b["error"]["details"]["scope"] == "user" for b in refused)
    code, q = server.request("GET", f"/api/v1/users/{uid}/quota", token=token)
    assert q["usage"]["gpus"] == 2 and q["usage"]["environments"] == 2 and q["owned_workspaces"] == 2
    for env in accepted:
        assert server.request("DELETE", f"/api/v1/environments/{env['id']}", token=token)[0] == 202


def test_max_owned_workspaces_holds_under_concurrent_creates(server):
    token = server.signup("founder")
    answers = race([
        (lambda i=i: server.request("POST", "/api/v1/workspaces", {"name": f"w{i}"}, token=token)) for i in range(10)
    ])
    assert sorted(code for code, _ in answers) == [201] * 5 + [409] * 5
    code, page = server.request("GET", "/api/v1/workspaces", token=token)
    assert page["total"] == 6  # five team workspaces and the personal one


def test_of_concurrent_answers_to_one_invitation_exactly_one_wins(server):
    owner, guest = server.signup("inviter"), server.signup("guest")
    code, ws = server.request("POST", "/api/v1/workspaces", {"name": "consent"}, token=owner)
    assert code == 201, ws
    for _ in range(3):
        code, sent = server.request("POST", f"/api/v1/workspaces/{ws['id']}/invitations", {"username": "guest"}, token=owner)
        assert code == 201, sent
        me = f"/api/v1/users/me/invitations/{sent['id']}"
        answers = race([
            lambda: server.request("POST", me + "/accept", token=guest),
            lambda: server.request("POST", me + "/accept", token=guest),
            lambda: server.request("POST", me + "/decline", token=guest),
            lambda: server.request("DELETE", f"/api/v1/workspaces/{ws['id']}/invitations/{sent['id']}", token=owner),
        ])
        codes = [code for code, _ in answers]
        assert sum(c in (200, 204) for c in codes) == 1 and codes.count(409) == 3, answers
        code, members = server.request("GET", f"/api/v1/workspaces/{ws['id']}/members", token=owner)
        joined = [m for m in members["items"] if m["username"] == "guest"]
        assert len(joined) == (1 if answers[0][0] == 200 or answers[1][0] == 200 else 0)
        if joined:
            gid = joined[0]["user_id"]
            assert server.request("DELETE", f"/api/v1/workspaces/{ws['id']}/members/{gid}", token=owner)[0] == 204
