"""The real server on PostgreSQL: migrations apply, and the identity/workspace flow works."""

from __future__ import annotations


import pytest

from tests.support.components import postgres_url
from tests.support.postgres import reset_schema
from tests.support.live_server import live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = postgres_url()
    reset_schema(url)
    with live_server(tmp_path_factory.mktemp("pg"), REMOTEGPU_DATABASE_URL=url) as srv:
        yield srv


def test_register_login_workspace_quota_and_admin_on_postgres(server):
    token = server.signup("pguser")
    code, me = server.request("GET", "/api/v1/users/me", token=token)
    assert code == 200 and me["username"] == "pguser"
    code, ws = server.request("POST", "/api/v1/workspaces", {"name": "PG Lab"}, token=token)
    assert code == 201
    admin = server.login("admin", "admin-password-123")
    code, q = server.request("PUT", f"/api/v1/workspaces/{ws['id']}/quota", {"max_gpus": 1}, token=admin)
    assert code == 200 and q["max_gpus"] == 1
    code, env = server.request("POST", "/api/v1/environments", {"name": "a", "workspace_id": ws["id"], "gpu_count": 1}, token=token)
    assert code == 202, env
    code, err = server.request("POST", "/api/v1/environments", {"name": "b", "workspace_id": ws["id"], "gpu_count": 1}, token=token)
    assert code == 409 and err["error"]["code"] == "quota_exceeded"
    code, users = server.request("GET", "/api/v1/users?search=pguser", token=admin)
    assert code == 200 and users["total"] == 1
    code, _ = server.request("PATCH", f"/api/v1/users/{me['id']}", {"is_active": False}, token=admin)
    assert code == 200
    code, _ = server.request("GET", "/api/v1/users/me", token=token)
    assert code == 401  # disabled: the next request is refused
    assert "Traceback" not in server.log_path.read_text()
