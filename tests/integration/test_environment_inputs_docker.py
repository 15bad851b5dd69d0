"""Secret variables and the data dir on a real server with real Docker: the secret
reaches the container's environment and nothing else (not the API, not the database
file, not the log at DEBUG); the data dir is the server user's only."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
SECRET = "hf_live_real-docker-secret-4c1d"


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(docker, tmp_path_factory):
    scope = f"inp{int(time.time())}"
    data_dir = tmp_path_factory.mktemp("inputs") / "data"
    # The scope goes once the server (and its agent, which would recreate what it still
    # wants running) has stopped.
    try:
        with live_server(
            data_dir, REMOTEGPU_RUNTIME="docker", REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope,
            REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_LOG_LEVEL="DEBUG",
        ) as srv:
            srv.token = srv.login("admin", "admin-password-123")
            srv.data_dir = data_dir
            yield srv
    finally:
        remove_scope(docker, scope)


def wait_for(server, env_id: str, status: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)
        if code == 200 and env["status"] == status:
            return env
        assert time.monotonic() < deadline, f"environment did not reach {status}: {code} {env}"
        time.sleep(0.3)


def test_a_secret_variable_reaches_the_container_and_nothing_else(server, docker):
    code, ws = server.request("GET", "/api/v1/workspaces", token=server.token)
    ws_id = ws["items"][0]["id"]
    base = {"workspace_id": ws_id, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1}
    code, err = server.request("POST", "/api/v1/environments", {**base, "name": "gpu-thief", "env": {"NVIDIA_VISIBLE_DEVICES": "all"}},
                               token=server.token)
    assert code == 422 and err["error"]["code"] == "reserved_variable"
    code, env = server.request(
        "POST", "/api/v1/environments",
        {**base, "name": "secret-box", "env": {"PLAIN_VAR": "plain"}, "secret_env": {"HF_TOKEN": SECRET}}, token=server.token,
    )
    assert code == 202, env
    env = wait_for(server, env["id"], "running")
    try:
        (container,) = docker.containers.list(filters={"label": f"remotegpu.env_id={env['id']}"})
        code, out = container.exec_run(["sh", "-c", 'printf %s "$HF_TOKEN/$PLAIN_VAR"'])
        assert code == 0 and out.decode() == f"{SECRET}/plain"
        # GPU visibility comes from the allocation only: none here, so none for an NVIDIA runtime either.
        env_vars = dict(v.split("=", 1) for v in container.attrs["Config"]["Env"])
        assert env_vars["NVIDIA_VISIBLE_DEVICES"] == "void"

        code, raw = server.request("GET", f"/api/v1/environments/{env['id']}", token=server.token)
        assert code == 200 and SECRET not in str(raw)
        assert {"name": "HF_TOKEN", "secret": True, "value": None} in raw["variables"]
        code, listed = server.request("GET", "/api/v1/environments", token=server.token)
        assert SECRET not in str(listed)

        stored = b"".join(p.read_bytes() for p in server.data_dir.glob("remotegpu.db*"))
        assert b"HF_TOKEN" in stored or b"secret-box" in stored  # (the rows are there...)
        assert SECRET.encode() not in stored  # (...the value is not)
        assert SECRET not in server.log_path.read_text(errors="replace")
    finally:
        server.request("DELETE", f"/api/v1/environments/{env['id']}", token=server.token)
        deadline = time.monotonic() + 60
        while docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env['id']}"}):
            assert time.monotonic() < deadline, "container left behind"
            time.sleep(0.3)


def test_the_data_dir_is_private_after_start_up(server):
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(server.data_dir) == 0o700
    files = [p for p in server.data_dir.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"remotegpu.db", "server.log"}  # server.log: made 0644 by the harness before start
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
