"""The `remotegpu` command: migrate, create-admin, and serve's first-admin bootstrap."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.live_server import live_server


def run(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", *args], env=env, capture_output=True, text=True, timeout=120, **kw)


def test_migrate_then_create_admin_then_log_in(tmp_path):
    env = {**os.environ, "REMOTEGPU_DATA_DIR": str(tmp_path), "REMOTEGPU_PASSWORD_HASH_PROFILE": "fast", "REMOTEGPU_LOG_LEVEL": "WARNING"}
    assert run(["migrate"], env).returncode == 0
    out = run(["create-admin", "ops", "--password", "ops-password-1"], env)
    assert out.returncode == 0, out.stderr
    bad = run(["create-admin", "X!", "--password", "ops-password-1"], env)
    assert bad.returncode == 2 and "username" in bad.stderr
    with live_server(tmp_path, REMOTEGPU_ADMIN_USERNAME="", REMOTEGPU_ADMIN_PASSWORD="") as srv:
        token = srv.login("ops", "ops-password-1")
        code, me = srv.request("GET", "/api/v1/users/me", token=token)
        assert code == 200 and me["is_admin"] is True


def test_first_start_prints_a_generated_admin_password_once(tmp_path):
    with live_server(tmp_path, REMOTEGPU_ADMIN_USERNAME="", REMOTEGPU_ADMIN_PASSWORD="") as srv:
        pass
    log = (tmp_path / "server.log").read_text()
    password = log.split("with password: ", 1)[1].split()[0]
    with live_server(tmp_path, REMOTEGPU_ADMIN_USERNAME="", REMOTEGPU_ADMIN_PASSWORD="") as srv:
        srv.login("admin", password)
    assert "with password" not in (tmp_path / "server.log").read_text()  # second start: not printed again
