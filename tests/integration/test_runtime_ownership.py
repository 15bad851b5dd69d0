"""Nothing is deleted that was not asked for, on real Docker with real servers.

* Two installations on one Docker daemon, both with default settings (no
  ``REMOTEGPU_DOCKER_SCOPE``): each runs an environment; over many heartbeats neither
  container is restarted, stopped or recreated (same id, same start time, no Docker
  event), and both answer on SSH. Before installation ids both used the scope
  ``default`` and each removed the other's containers every beat.
* The embedded agent loses its credentials file: it registers as a new host, and the
  environment's container and volume — with every file — are still there,
  quarantined on the new host (stopped, listed for admins). With the file restored,
  the environment runs again in the very same container.
"""

from __future__ import annotations

import os
import io
import socket
import tarfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
ADMIN = ("admin", "admin-password-123")


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


def wait_until(predicate, timeout: float = 90, what: str = "condition", interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def installation(data_dir: Path, docker, *, clean_up: bool = True, **env: str):
    """A server with its embedded agent on this Docker, default scope settings; on exit
    (unless ``clean_up`` is False: the data dir lives on in another server) everything
    its installation made is removed (found by its installation id)."""
    try:
        with live_server(data_dir, REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA A100-SXM4-80GB",
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5", **env) as srv:
            srv.token = srv.login(*ADMIN)
            yield srv
    finally:
        scope_file = data_dir / "installation_id"
        if clean_up and scope_file.exists():
            remove_scope(docker, scope_file.read_text().strip())


def create_env(server, name: str) -> dict:
    code, ws = server.request("GET", "/api/v1/workspaces", token=server.token)
    assert code == 200, ws
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": name, "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1},
        token=server.token,
    )
    assert code == 202, env
    return env


def env_status(server, env_id: str) -> str:
    code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)
    assert code == 200, env
    return env["status"]


def wait_running(server, env_id: str) -> dict:
    wait_until(lambda: env_status(server, env_id) == "running", what=f"{env_id} running")
    return server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)[1]


def container_of(docker, env_id: str):
    (container,) = docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})
    return container


def ssh_banner(port: int) -> bytes:
    def read():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                sock.settimeout(3)
                return sock.recv(64)
        except OSError:
            return b""

    return wait_until(lambda: read().startswith(b"SSH-2.0-") and read(), 30, f"an SSH banner on {port}")


def hosts(server) -> list[dict]:
    code, body = server.request("GET", "/api/v1/hosts", token=server.token)
    assert code == 200, body
    return body["items"]


def test_two_installations_on_one_docker_daemon_leave_each_other_alone(docker, tmp_path):
    with ExitStack() as stack:
        first = stack.enter_context(installation(tmp_path / "first", docker))
        second = stack.enter_context(installation(tmp_path / "second", docker))
        a, b = create_env(first, "first-env"), create_env(second, "second-env")
        envs = {a["id"]: wait_running(first, a["id"]), b["id"]: wait_running(second, b["id"])}

        scopes = {(tmp_path / name / "installation_id").read_text().strip() for name in ("first", "second")}
        assert len(scopes) == 2 and "default" not in scopes, "each installation labels with its own id"
        before = {env_id: container_of(docker, env_id) for env_id in envs}
        for env_id, container in before.items():
            assert container.labels["remotegpu.scope"] in scopes
            assert container.labels["remotegpu.host_id"] == envs[env_id]["host_id"]
        assert before[a["id"]].labels["remotegpu.scope"] != before[b["id"]].labels["remotegpu.scope"]

        since = int(time.time()) + 1  # Docker's filter has whole seconds
        time.sleep(9)  # 8 heartbeats of each agent
        until = int(time.time())

        for env_id, container in before.items():
            now = container_of(docker, env_id)
            assert now.id == container.id, "recreated"
            assert now.status == "running" and now.attrs["RestartCount"] == 0
            assert now.attrs["State"]["StartedAt"] == container.attrs["State"]["StartedAt"], "restarted"
        events = list(docker.events(since=since, until=until, decode=True,
                                    filters={"type": "container", "container": [c.id for c in before.values()]}))
        disturbed = [e for e in events if e.get("Action") in ("kill", "die", "stop", "destroy", "create", "start")]
        assert disturbed == [], f"containers disturbed between {since} and {until}"

        for server, env_id in ((first, a["id"]), (second, b["id"])):
            assert env_status(server, env_id) == "running"
            assert all(h["quarantined"] == [] for h in hosts(server)), "neither saw the other's environment"
            ssh_port = next(p["port"] for p in envs[env_id]["ports"] if p["purpose"] == "ssh")
            assert ssh_banner(ssh_port).startswith(b"SSH-2.0-OpenSSH")
        for server in (first, second):
            assert "Traceback" not in server.log_path.read_text()


def read_file_in(container, path: str) -> str:
    """A file of a container, running or not (Docker's archive API)."""
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read().decode()


def test_an_agent_that_lost_its_credentials_keeps_the_disk_it_finds(docker, tmp_path):
    data = tmp_path / "data"
    credentials = data / "agent" / "agent-credentials.json"
    with installation(data, docker, REMOTEGPU_AGENT_NAME="box") as server:
        env = create_env(server, "precious")
        wait_running(server, env["id"])
        container = container_of(docker, env["id"])
        code, out = container.exec_run(["sh", "-c", "mkdir -p /opt/mine && echo system > /opt/mine/f && "
                                        "echo work > /root/workspace/f && echo rc > /root/.mydotrc"])
        assert code == 0, out
        old_host = env["host_id"]
        saved = credentials.read_bytes()

        # The server stops, its agent's credentials file is lost, it starts again: the
        # embedded agent registers as a new host (the old one goes offline, the
        # environment lost) and finds a container it was not asked for.
        with ExitStack() as restart:
            server.process.terminate()
            server.process.wait(30)
            credentials.unlink()
            again = restart.enter_context(installation(data, docker, clean_up=False, REMOTEGPU_AGENT_NAME="box"))
            new_host = wait_until(lambda: [h for h in hosts(again) if h["id"] != old_host and h["status"] == "ready"],
                                  60, "the agent to register as a new host")[0]
            wait_until(lambda: env_status(again, env["id"]) == "lost", 60, "the environment to be lost")
            entries = wait_until(lambda: next(h for h in hosts(again) if h["id"] == new_host["id"])["quarantined"],
                                 60, "the quarantine on the new host")
            assert [(q["env_id"], q["host_id"]) for q in entries] == [(env["id"], old_host)]
            time.sleep(3)  # more beats: still nothing removed
            kept = container_of(docker, env["id"])
            assert kept.id == container.id and kept.status == "exited", "quarantined: stopped, not removed"
            assert docker.volumes.get(f"rgpu-vol-{env['id']}")
            assert read_file_in(kept, "/opt/mine/f") == "system\n"
            assert read_file_in(kept, "/root/.mydotrc") == "rc\n"
            assert read_file_in(kept, "/root/workspace/f") == "work\n"
            again.process.terminate()
            again.process.wait(30)

        # With the credentials back, the old host returns and its environment runs
        # again, in the same container, with its files.
        credentials.write_bytes(saved)
        with installation(data, docker, REMOTEGPU_AGENT_NAME="box") as back:
            wait_running(back, env["id"])
            revived = container_of(docker, env["id"])
            assert revived.id == container.id
            code, out = revived.exec_run(["cat", "/opt/mine/f", "/root/workspace/f", "/root/.mydotrc"])
            assert (code, out.decode()) == (0, "system\nwork\nrc\n")
