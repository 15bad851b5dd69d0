"""The issue's reproduction, on the real server: 8 concurrent HTTP refreshes of one
refresh token, on embedded SQLite and on PostgreSQL. Exactly one gets a new pair."""

from __future__ import annotations

import threading

import pytest

from tests.support.components import postgres_url
from tests.support.live_server import live_server
from tests.support.postgres import reset_schema

N = 8


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, tmp_path):
    env = {}
    if request.param == "postgres":
        url = postgres_url()
        reset_schema(url)
        env["REMOTEGPU_DATABASE_URL"] = url
    with live_server(tmp_path / "srv", **env) as srv:
        yield srv


def test_of_8_concurrent_refreshes_exactly_one_succeeds(server):
    server.signup("rotator")
    code, pair = server.request("POST", "/api/v1/auth/login", {"username": "rotator", "password": "correct horse battery"})
    assert code == 200
    barrier = threading.Barrier(N)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def refresh() -> None:
        barrier.wait()
        result = server.request("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=refresh) for _ in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    codes = sorted(code for code, _ in results)
    assert codes == [200] + [401] * (N - 1), results
    assert {body["error"]["code"] for code, body in results if code == 401} <= {"refresh_token_reused", "invalid_refresh_token"}
    assert "Traceback" not in server.log_path.read_text()
