"""Crash and heartbeat-loss recovery against the real server process.

* The server is killed (SIGKILL) after an environment got its GPUs but before its
  container exists, or right after the container appeared: a new server on the same
  data dir and Docker scope converges — the environment runs exactly once, in one
  container, with no orphan container and no leaked allocation.
* A container carrying this scope's labels that the server does not know is
  quarantined: stopped, kept (container and volume), listed on the host; never removed.
* A remote agent (``remotegpu agent`` over HTTP, in-memory runtime) that stops
  answering makes its host ``offline`` and its environment ``lost`` within about three
  heartbeats; when it comes back (resumed, or restarted with its saved token) the host
  is ``ready`` again and the environment ``running``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from docker import errors as docker_errors

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import live_server

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
FAKE = "4xNVIDIA A100-SXM4-80GB"
ADMIN = ("admin", "admin-password-123")


# --- helpers --------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 60, what: str = "condition", interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def get_env(server, token: str, env_id: str) -> dict:
    code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=token)
    assert code == 200, env
    return env


def wait_status(server, token: str, env_id: str, status: str, timeout: float = 60) -> dict:
    last: dict = {}

    def check():
        nonlocal last
        last = get_env(server, token, env_id)
        return last if last["status"] == status else None

    try:
        return wait_until(check, timeout, f"{env_id} to be {status}")
    except AssertionError:
        raise AssertionError(f"environment did not become {status}: {last}") from None


def free_gpus(server, token: str) -> int:
    code, body = server.request("GET", "/api/v1/gpu-types", token=token)
    assert code == 200, body
    return sum(t["free"] for t in body["items"])


def create_env(server, token: str, name: str, gpu_count: int) -> dict:
    code, ws = server.request("GET", "/api/v1/workspaces", token=token)
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": name, "workspace_id": ws["items"][0]["id"], "gpu_count": gpu_count, "cpu_cores": 1, "memory_gib": 1},
        token=token,
    )
    assert code == 202, env
    return env


def event_reasons(server, token: str, env_id: str) -> list[tuple[str, str]]:
    code, events = server.request("GET", f"/api/v1/environments/{env_id}/events?limit=500", token=token)
    assert code == 200, events
    return [(e["to_status"], e["reason"]) for e in events["items"]]


# --- Docker: a server killed mid-start ----------------------------------------------------------


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture
def scope(docker):
    name = f"crash{uuid.uuid4().hex[:10]}"
    yield name
    remove_scope(docker, name)


@contextmanager
def docker_server(data_dir: Path, scope: str, heartbeat: float = 1.0):
    with live_server(
        data_dir, REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE, REMOTEGPU_DOCKER_SCOPE=scope,
        REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_HEARTBEAT_SECONDS=str(heartbeat),
        REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5",
    ) as srv:
        srv.token = srv.login(*ADMIN)
        wait_until(lambda: free_gpus(srv, srv.token) + len(allocated(srv)) == 4, 30, "the embedded agent's host")
        yield srv


def quarantined_on_hosts(server) -> list[str]:
    code, hosts = server.request("GET", "/api/v1/hosts", token=server.token)
    assert code == 200, hosts
    return [q["env_id"] for h in hosts["items"] for q in h["quarantined"]]


def allocated(server) -> list[str]:
    code, hosts = server.request("GET", "/api/v1/hosts", token=server.token)
    assert code == 200, hosts
    return [g["uuid"] for h in hosts["items"] for g in h["gpus"] if g["allocated"]]


def containers(docker, scope: str, env_id: str | None = None) -> list:
    labels = [f"remotegpu.scope={scope}"] + ([f"remotegpu.env_id={env_id}"] if env_id else [])
    for _ in range(20):
        try:
            return docker.containers.list(all=True, filters={"label": labels})
        except docker_errors.NotFound:
            # docker-py lists, then inspects each container; polled every few ms while
            # Docker is still creating one, the inspect can miss it for a moment
            # (seen about once in 20 runs; no container was ever removed meanwhile).
            time.sleep(0.01)
    return docker.containers.list(all=True, filters={"label": labels})


def volumes(docker, scope: str) -> list:
    return docker.volumes.list(filters={"label": f"remotegpu.scope={scope}"})


def kill_hard(server) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


def assert_converged(server, docker, scope: str, env_id: str, gpu_count: int, besides: frozenset = frozenset()) -> dict:
    """Running exactly once: one container, running, holding exactly its GPUs; nothing
    else in the scope but the environments ``besides`` (in quarantine)."""
    env = wait_status(server, server.token, env_id, "running")

    def ours():
        return [c for c in containers(docker, scope) if c.labels["remotegpu.env_id"] not in besides]

    found = wait_until(lambda: (c := ours()) and len(c) == 1 and c[0].status == "running" and c,
                       30, "exactly one running container in the scope")
    assert found[0].labels["remotegpu.env_id"] == env_id
    assert [v.name for v in volumes(docker, scope) if v.attrs["Labels"]["remotegpu.env_id"] not in besides] == [f"rgpu-vol-{env_id}"]
    assert len(env["gpus"]) == gpu_count
    held = allocated(server)
    assert sorted(held) == sorted(g["uuid"] for g in env["gpus"]), "an allocation leaked or went missing"
    assert free_gpus(server, server.token) == 4 - gpu_count
    time.sleep(2.5)  # a few more beats: it stays put (no second container, no restart loop)
    again = ours()
    assert [c.id for c in again] == [found[0].id]
    again[0].reload()
    assert again[0].status == "running" and again[0].attrs["RestartCount"] == 0
    assert get_env(server, server.token, env_id)["status"] == "running"
    return env


def delete_and_check_nothing_left(server, docker, scope: str, env_id: str) -> None:
    code, body = server.request("DELETE", f"/api/v1/environments/{env_id}", token=server.token)
    assert code == 202, body
    wait_until(lambda: not containers(docker, scope) and not volumes(docker, scope), 60, "container and volume removed")
    wait_until(lambda: server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)[0] == 404, 30, "deleted")
    assert free_gpus(server, server.token) == 4 and allocated(server) == []


def test_killed_after_allocation_before_the_container_then_restart_converges(docker, scope, tmp_path):
    data = tmp_path / "data"
    # The agent acts on a new environment at once (it long-polls between beats), so the
    # kill lands just before, while or just after its container is created and started
    # (Docker may finish a start the dead agent asked for): from any of these the restart
    # must converge to one running container on the GPUs allocated before the kill.
    with docker_server(data, scope, heartbeat=30) as first:
        env = create_env(first, first.token, "crashy", gpu_count=2)
        assert env["status"] == "starting" and len(env["gpus"]) == 2
        assert free_gpus(first, first.token) == 2
        kill_hard(first)

    # Meanwhile, a container of this scope that no server knows (e.g. from a database
    # restored to an older state), and one of another scope that is not ours to touch.
    orphan_id = str(uuid.uuid4())
    orphan_labels = {"remotegpu.managed": "true", "remotegpu.env_id": orphan_id, "remotegpu.scope": scope}
    docker.volumes.create(name=f"rgpu-vol-{orphan_id}", labels=orphan_labels)
    orphan = docker.containers.run(IMAGE, ["sleep", "3600"], entrypoint=[], name=f"rgpu-env-{orphan_id}",
                                   labels=orphan_labels, detach=True)
    foreign_scope = f"{scope}-other"
    foreign_id = str(uuid.uuid4())
    foreign = docker.containers.run(
        IMAGE, ["sleep", "3600"], entrypoint=[], name=f"rgpu-env-{foreign_id}", detach=True,
        labels={"remotegpu.managed": "true", "remotegpu.env_id": foreign_id, "remotegpu.scope": foreign_scope},
    )
    try:
        with docker_server(data, scope) as second:
            converged = assert_converged(second, docker, scope, env["id"], 2, besides=frozenset({orphan_id}))
            assert [g["uuid"] for g in converged["gpus"]] == [g["uuid"] for g in env["gpus"]]  # same GPUs as allocated
            # The unknown one is quarantined: stopped, kept with its volume, shown to admins.
            orphan.reload()
            assert orphan.status == "exited"
            assert docker.volumes.get(f"rgpu-vol-{orphan_id}")
            quarantined = wait_until(lambda: quarantined_on_hosts(second), 30, "the quarantine on the host")
            assert quarantined == [orphan_id]
            foreign.reload()
            assert foreign.status == "running"  # another scope's container is never touched
            # What an operator does once sure it is nobody's: remove it by hand.
            orphan.remove(force=True)
            docker.volumes.get(f"rgpu-vol-{orphan_id}").remove(force=True)
            wait_until(lambda: not quarantined_on_hosts(second), 30, "the quarantine list to empty")
            delete_and_check_nothing_left(second, docker, scope, env["id"])
            assert "Traceback" not in second.log_path.read_text()
    finally:
        foreign.remove(force=True)
        try:
            orphan.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone, as it should be
            pass


def test_killed_right_after_the_container_appeared_then_restart_adopts_it(docker, scope, tmp_path):
    data = tmp_path / "data"
    with docker_server(data, scope) as first:
        env = create_env(first, first.token, "adopt-me", gpu_count=1)
        # Kill the moment Docker has the container (created, maybe not yet started,
        # maybe not yet reported): the server never learns how the start went.
        seen = wait_until(lambda: containers(docker, scope, env["id"]), 30, "the container to appear", interval=0.005)
        kill_hard(first)
    assert len(seen) == 1
    with docker_server(data, scope) as second:
        assert_converged(second, docker, scope, env["id"], 1)
        assert containers(docker, scope)[0].id == seen[0].id  # adopted, not created a second time
        statuses = [s for s, _ in event_reasons(second, second.token, env["id"])]
        assert statuses[-1] == "running"
        delete_and_check_nothing_left(second, docker, scope, env["id"])


# --- a remote agent that goes silent --------------------------------------------------------------


@contextmanager
def agent_process(server_url: str, state_dir: Path, log_path: Path, token: str | None):
    cmd = [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server_url, "--runtime", "memory",
           "--fake-gpus", "2xNVIDIA A100-SXM4-80GB", "--state-dir", str(state_dir), "--name", "remote-box"]
    if token:
        cmd += ["--token", token]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
    env["REMOTEGPU_LOG_LEVEL"] = "INFO"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def host_of(server, token: str, host_id: str) -> dict:
    code, host = server.request("GET", f"/api/v1/hosts/{host_id}", token=token)
    assert code == 200, host
    return host


def test_agent_heartbeat_loss_makes_host_offline_and_environment_lost_then_back(tmp_path):
    with live_server(tmp_path / "server", REMOTEGPU_EMBEDDED_AGENT="false", REMOTEGPU_HEARTBEAT_SECONDS="1",
                     REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5") as server:
        admin = server.login(*ADMIN)
        # The agent runs on this machine (private address 127.0.0.1): an admin's explicit allowance.
        code, host = server.request("POST", "/api/v1/hosts", {"name": "remote-box", "allow_loopback": True}, token=admin)
        assert code == 201, host
        assert free_gpus(server, admin) == 0  # not registered yet: nothing to schedule on
        state_dir, log_path = tmp_path / "agent-state", tmp_path / "agent.log"

        with agent_process(server.url, state_dir, log_path, host["join_token"]) as agent:
            wait_until(lambda: host_of(server, admin, host["id"])["status"] == "ready", 30, "the agent to register")
            assert (state_dir / "agent-credentials.json").exists()  # the saved agent token
            assert free_gpus(server, admin) == 2
            env = create_env(server, admin, "remote", gpu_count=1)
            wait_status(server, admin, env["id"], "running", 30)

            # The agent freezes: 3 missed beats (3 s) and a sweep later the host is offline.
            agent.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            wait_until(lambda: host_of(server, admin, host["id"])["status"] == "offline", 15, "the host to go offline")
            lost = wait_status(server, admin, env["id"], "lost", 5)
            assert time.monotonic() - stopped_at < 8, "took longer than ~3 heartbeats and a sweep"
            assert "missed 3 heartbeats" in lost["status_message"]
            assert free_gpus(server, admin) == 0  # a lost environment keeps its GPU: it may well still run
            assert len(lost["gpus"]) == 1

            # It thaws: its runtime still runs the environment, so it is simply running again.
            agent.send_signal(signal.SIGCONT)
            wait_until(lambda: host_of(server, admin, host["id"])["status"] == "ready", 15, "the host to come back")
            back = wait_status(server, admin, env["id"], "running", 15)
            assert back["gpus"] == lost["gpus"]
            assert ("running", "host is back; container is running") in event_reasons(server, admin, env["id"])

            # Now it dies for good (its in-memory runtime with it) ...
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
        wait_until(lambda: host_of(server, admin, host["id"])["status"] == "offline", 15, "the host to go offline again")
        wait_status(server, admin, env["id"], "lost", 5)

        # ... and is started again without a join token: it reuses its saved agent token.
        with agent_process(server.url, state_dir, log_path, None) as agent:
            wait_until(lambda: host_of(server, admin, host["id"])["status"] == "ready", 30, "the restarted agent")
            back = wait_status(server, admin, env["id"], "running", 30)
            assert len(back["gpus"]) == 1 and free_gpus(server, admin) == 1
            reasons = event_reasons(server, admin, env["id"])
            assert ("starting", "host is back; starting the container again") in reasons
            assert agent.poll() is None
            code, body = server.request("DELETE", f"/api/v1/environments/{env['id']}", token=admin)
            assert code == 202
            wait_until(lambda: server.request("GET", f"/api/v1/environments/{env['id']}", token=admin)[0] == 404, 15, "deleted")
            assert free_gpus(server, admin) == 2
        assert "Traceback" not in server.log_path.read_text()
        assert "registered" in log_path.read_text()
