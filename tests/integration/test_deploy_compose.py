"""deploy/compose/ stands the whole platform up on this machine's Docker engine, from
images built here (deploy/compose/build-images.sh: Debian packages in a debootstrap
rootfs, nothing pulled), and the core flow runs against it over HTTP through nginx:
the admin logs in, adds the Docker host (the compose `agent`, on the host network, with
fake GPUs), creates an environment, reaches its JupyterLab through nginx on the apps
wildcard host (HTTP and a websocket), stops, starts and deletes it. Two `serve`
replicas run behind nginx; Prometheus scrapes both.

The stack runs under a project name, subnet and Docker scope of its own; afterwards
nothing of it is left (containers, volumes, networks, the agent's state directory)."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import IMAGE
from tests.support.app_hosts import app_origin, browser_session, console_login, handshake
from tests.support.components import docker_with_image, missing, remove_scope
from tests.support.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
GPU = "NVIDIA T4 16GB"
ADMIN_PASSWORD = "compose-admin-password-1"


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    missing("no compose tool (deploy/ci/services.d/deploy.sh installs Debian's docker-compose)")


def free_subnet(docker) -> ipaddress.IPv4Network:
    """A /24 no Docker network (and no address of this machine) uses."""
    used = []
    for network in docker.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet") and ":" not in config["Subnet"]:
                used.append(ipaddress.ip_network(config["Subnet"]))
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.split("\n")
    for line in routes:
        first = line.split(" ", 1)[0]
        if "/" in first:
            used.append(ipaddress.ip_network(first, strict=False))
    for _ in range(200):
        candidate = ipaddress.ip_network(f"172.30.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise AssertionError("no free /24 in 172.30.0.0/16")


class Stack:
    def __init__(self, compose: list[str], project: str, env_file: Path, port: int, scope: str):
        self.compose, self.project, self.env_file, self.port, self.scope = compose, project, env_file, port, scope
        self.url = f"http://127.0.0.1:{port}"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run([*self.compose, "--project-directory", str(COMPOSE_DIR), "-f", str(COMPOSE_DIR / "docker-compose.yml"),
                               "--env-file", str(self.env_file), "-p", self.project, *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def logs(self) -> str:
        return self.run("--profile", "agent", "logs", "--no-color", "--tail", "40").stdout[-8000:]

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None,
                host: str | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if host:
            req.add_header("Host", host)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else {}
            except ValueError:
                return exc.code, {"raw": raw[:200].decode(errors="replace")}

    def wait(self, what: str, check, timeout: float = 120):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"{what}: timed out (last: {last})\n{self.logs()}")


def leftovers(docker, project: str, scope: str) -> list[str]:
    label = {"label": f"com.docker.compose.project={project}"}
    found = [f"container {c.name}" for c in docker.containers.list(all=True, filters=label)]
    found += [f"volume {v.name}" for v in docker.volumes.list(filters=label)]
    found += [f"network {n.name}" for n in docker.networks.list(filters=label)]
    scoped = {"label": f"remotegpu.scope={scope}"}
    found += [f"env container {c.name}" for c in docker.containers.list(all=True, filters=scoped)]
    found += [f"env volume {v.name}" for v in docker.volumes.list(filters=scoped)]
    found += [f"env network {n.name}" for n in docker.networks.list(filters=scoped)]
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    compose = compose_command()
    if os.geteuid() != 0:
        missing("building the stack's images needs root (debootstrap, chroot)")
    built = subprocess.run([str(COMPOSE_DIR / "build-images.sh")], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-4000:]
    images = dict(line.removeprefix("export ").split("=", 1) for line in built.stdout.split("\n") if line.startswith("export "))

    suffix = uuid.uuid4().hex[:8]
    project, scope = f"rgsmoke{suffix}", f"rgsmoke{suffix}"
    subnet = free_subnet(docker)
    gateway = str(subnet.network_address + 1)
    port = free_port()
    base = tmp_path_factory.mktemp("compose")
    state_dir = Path("/var/tmp") / f"remotegpu-compose-{suffix}"  # the agent's, same path on the host and inside
    settings = {
        "COMPOSE_PROJECT_NAME": project,
        "REMOTEGPU_INFRA_IMAGE": images["REMOTEGPU_INFRA_IMAGE"],
        "REMOTEGPU_PLATFORM_IMAGE_REF": images["REMOTEGPU_PLATFORM_IMAGE_REF"],
        "POSTGRES_PASSWORD": "pg-" + uuid.uuid4().hex,
        "REDIS_PASSWORD": "redis-" + uuid.uuid4().hex,
        "REMOTEGPU_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "REMOTEGPU_ADMIN_USERNAME": "admin",
        "REMOTEGPU_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "REMOTEGPU_METRICS_TOKEN": "metrics-" + uuid.uuid4().hex,
        "REMOTEGPU_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REMOTEGPU_PUBLIC_HOST": "127.0.0.1",
        "REMOTEGPU_APPS_DOMAIN": "localhost",
        "REMOTEGPU_HTTP_BIND": "127.0.0.1",
        "REMOTEGPU_HTTP_PORT": str(port),
        "REMOTEGPU_REGISTRY_PORT": str(free_port()),
        "REMOTEGPU_PROMETHEUS_PORT": str(free_port()),
        "REMOTEGPU_SERVE_REPLICAS": "2",
        "REMOTEGPU_SUBNET": str(subnet),
        "REMOTEGPU_GATEWAY": gateway,
        "REMOTEGPU_BASE_IMAGE": IMAGE,
        "REMOTEGPU_AGENT_NAME": f"compose-{suffix}",
        "REMOTEGPU_AGENT_STATE_DIR": str(state_dir),
        "REMOTEGPU_AGENT_FAKE_GPUS": f"2x{GPU}",
        "REMOTEGPU_DOCKER_SCOPE": scope,
        "REMOTEGPU_AGENT_TOKEN": "",
    }
    env_file = base / "stack.env"

    def write_env() -> None:
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    write_env()
    s = Stack(compose, project, env_file, port, scope)
    try:
        up = s.run("up", "-d")
        assert up.returncode == 0, up.stderr[-4000:] + s.logs()
        s.wait("the console through nginx", lambda: s.request("GET", "/readyz")[0] == 200)
        code, body = s.request("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        assert code == 200, body
        token = body["access_token"]
        code, host = s.request("POST", "/api/v1/hosts", {"name": f"compose-{suffix}"}, token=token)
        assert code == 201, host
        settings["REMOTEGPU_AGENT_TOKEN"] = host["join_token"]
        write_env()
        up = s.run("--profile", "agent", "up", "-d", "agent")
        assert up.returncode == 0, up.stderr[-4000:]
        ready = s.wait("the agent's host ready", lambda: (lambda r: r[0] == 200 and r[1]["status"] == "ready"
                                                          and r[1]["gpus"] and r[1])(
            s.request("GET", f"/api/v1/hosts/{host['id']}", token=token)))
        assert ready["runtime"] == "docker" and ready["private_address"] == gateway
        s.token, s.host_id, s.docker = token, host["id"], docker
        s.prometheus_port = int(settings["REMOTEGPU_PROMETHEUS_PORT"])
        yield s
    finally:
        down = s.run("--profile", "agent", "down", "--volumes", "--remove-orphans", "--timeout", "10")
        remove_scope(docker, scope)  # environments the agent made, if a test failed before deleting them
        shutil.rmtree(state_dir, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-3000:]
        assert not leftovers(docker, project, scope), leftovers(docker, project, scope)


def env_status(stack: Stack, env_id: str) -> str | None:
    code, env = stack.request("GET", f"/api/v1/environments/{env_id}", token=stack.token)
    return env["status"] if code == 200 else f"http {code}"


async def test_core_flow_through_nginx_on_the_compose_stack(stack):
    s = stack
    # Two serve replicas behind nginx, both healthy, both scraped by Prometheus.
    ps = s.run("ps", "-q", "serve")
    assert len(ps.stdout.split()) == 2, ps.stdout
    code, ws = s.request("GET", "/api/v1/workspaces", token=s.token)
    assert code == 200, ws
    code, env = s.request("POST", "/api/v1/environments",
                          {"name": "smoke", "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "gpu_model": GPU,
                           "cpu_cores": 1, "memory_gib": 1}, token=s.token)
    assert code == 202, env
    env_id = env["id"]
    s.wait("running", lambda: env_status(s, env_id) == "running", timeout=120)

    # JupyterLab through nginx on the apps wildcard host: the browser's handshake, an
    # HTTP answer from Jupyter itself, and a websocket (Upgrade passed through nginx).
    async with browser_session() as session:
        await console_login(session, s.url, "admin", ADMIN_PASSWORD)
        await handshake(session, s.url, env_id, s.port, next_path="/api/status")
        origin = app_origin(env_id, s.port)
        deadline = time.monotonic() + 60
        while True:
            async with session.get(f"{origin}/api/status") as r:
                body = await r.text()
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, f"JupyterLab did not answer through nginx: {r.status} {body[:300]}\n{s.logs()}"
            time.sleep(0.5)
        assert "last_activity" in json.loads(body), body
        async with session.ws_connect(f"{origin}/api/events/subscribe", headers={"Origin": origin}) as ws_conn:
            assert not ws_conn.closed
        # Another name than the console's and the apps domain's gets nothing from nginx.
        with pytest.raises(Exception):
            async with session.get(f"http://unknown.example.test:{s.port}/api/status") as r:
                await r.read()

    code, _ = s.request("POST", f"/api/v1/environments/{env_id}/stop", token=s.token)
    assert code == 202
    s.wait("stopped", lambda: env_status(s, env_id) == "stopped", timeout=90)
    code, _ = s.request("POST", f"/api/v1/environments/{env_id}/start", {}, token=s.token)
    assert code == 202
    s.wait("running again", lambda: env_status(s, env_id) == "running", timeout=120)
    code, _ = s.request("DELETE", f"/api/v1/environments/{env_id}", token=s.token)
    assert code in (202, 204)
    s.wait("deleted", lambda: env_status(s, env_id) == "http 404", timeout=90)
    scoped = {"label": f"remotegpu.scope={s.scope}"}
    s.wait("the environment's container and disk removed",
           lambda: not s.docker.containers.list(all=True, filters=scoped) and not s.docker.volumes.list(filters=scoped),
           timeout=30)

    # Prometheus (the compose scrape config, DNS discovery of the replicas) sees both up.
    prometheus = f"http://127.0.0.1:{s.prometheus_port}"

    def both_up():
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?query=up%7Bjob%3D%22remotegpu%22%7D", timeout=10) as r:
            result = json.loads(r.read())["data"]["result"]
        return len(result) == 2 and all(x["value"][1] == "1" for x in result)

    s.wait("Prometheus scraping both replicas", both_up, timeout=60)
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as r:
        groups = {g["name"] for g in json.loads(r.read())["data"]["groups"]}
    assert {"remotegpu-service", "remotegpu-fleet"} <= groups
