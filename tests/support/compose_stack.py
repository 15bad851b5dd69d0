"""The deploy/compose stack brought up for a test or a bench: images built by
deploy/compose/build-images.sh (cached by input hash), a project name, subnet, ports and
Docker scope of its own, the admin logged in, this machine's Docker added as a host
(the compose `agent`, fake GPUs) and ready. Leaving the context tears everything down
and checks that nothing of it is left."""

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.components import missing, remove_scope
from tests.support.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
GPU = "NVIDIA T4 16GB"
ADMIN_PASSWORD = "compose-admin-password-1"


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
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
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout.split("\n")
    for line in routes:
        first = line.split(" ", 1)[0]
        if "/" in first:
            used.append(ipaddress.ip_network(first, strict=False))
    # Docker hands out 172.17-31.0.0/16 and 192.168.x.0/20 to networks created without a subnet (every
    # environment network is), so on a busy daemon any one range can be taken whole: CI once found
    # 172.30.0.0/16 in use. Look in all the private ranges, at random so that two stacks rarely race.
    ranges = [ipaddress.ip_network(r) for r in ("172.16.0.0/12", "10.0.0.0/8", "192.168.0.0/16")]
    for _ in range(5000):
        block = random.choice(ranges)
        offset = random.randrange(block.num_addresses // 256) * 256
        candidate = ipaddress.ip_network(f"{block.network_address + offset}/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise AssertionError(f"no free /24 in the private ranges; in use: {sorted(map(str, used))}")


class Stack:
    def __init__(self, compose: list[str], project: str, env_file: Path, port: int, scope: str):
        self.compose, self.project, self.env_file, self.port, self.scope = compose, project, env_file, port, scope
        self.url = f"http://127.0.0.1:{port}"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run([*self.compose, "--project-directory", str(COMPOSE_DIR), "-f", str(COMPOSE_DIR / "docker-compose.yml"),
                               "--env-file", str(self.env_file), "-p", self.project, *args],
                              capture_output=True, text=True, timeout=timeout, env=env, check=False)

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



def build_images() -> dict[str, str]:
    """deploy/compose/build-images.sh (a no-op for unchanged inputs): the image references."""
    if os.geteuid() != 0:
        missing("building the stack's images needs root (debootstrap, chroot)")
    built = subprocess.run([str(COMPOSE_DIR / "build-images.sh")], capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    return dict(line.removeprefix("export ").split("=", 1) for line in built.stdout.split("\n") if line.startswith("export "))


@contextmanager
def compose_stack(docker, base_image: str, *, replicas: int = 2, gpus: str = f"2x{GPU}") -> Iterator[Stack]:
    compose = compose_command()
    images = build_images()
    suffix = uuid.uuid4().hex[:8]
    project, scope = f"rgsmoke{suffix}", f"rgsmoke{suffix}"
    subnet = free_subnet(docker)
    gateway = str(subnet.network_address + 1)
    port = free_port()
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
        "REMOTEGPU_SERVE_REPLICAS": str(replicas),
        "REMOTEGPU_SUBNET": str(subnet),
        "REMOTEGPU_GATEWAY": gateway,
        "REMOTEGPU_BASE_IMAGE": base_image,
        "REMOTEGPU_AGENT_NAME": f"compose-{suffix}",
        "REMOTEGPU_AGENT_STATE_DIR": str(state_dir),
        "REMOTEGPU_AGENT_FAKE_GPUS": gpus,
        "REMOTEGPU_DOCKER_SCOPE": scope,
        "REMOTEGPU_AGENT_TOKEN": "",
    }
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"remotegpu-compose-env-{suffix}"
    workdir.mkdir(mode=0o700)
    env_file = workdir / "stack.env"

    def write_env() -> None:
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    write_env()
    s = Stack(compose, project, env_file, port, scope)
    s.docker, s.subnet, s.gateway = docker, subnet, gateway
    s.prometheus_port = int(settings["REMOTEGPU_PROMETHEUS_PORT"])
    s.registry_port = int(settings["REMOTEGPU_REGISTRY_PORT"])
    try:
        started = time.monotonic()
        up = s.run("up", "-d")
        assert up.returncode == 0, up.stderr[-4000:] + s.logs()
        s.wait("the console through nginx", lambda: s.request("GET", "/readyz")[0] == 200)
        s.up_seconds = time.monotonic() - started
        code, body = s.request("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        assert code == 200, body
        s.token = body["access_token"]
        code, host = s.request("POST", "/api/v1/hosts", {"name": f"compose-{suffix}"}, token=s.token)
        assert code == 201, host
        settings["REMOTEGPU_AGENT_TOKEN"] = host["join_token"]
        write_env()
        up = s.run("--profile", "agent", "up", "-d", "agent")
        assert up.returncode == 0, up.stderr[-4000:]
        def host_ready() -> dict | None:
            code, body = s.request("GET", f"/api/v1/hosts/{host['id']}", token=s.token)
            return body if code == 200 and body["status"] == "ready" and body["gpus"] else None

        ready = s.wait("the agent's host ready", host_ready)
        assert ready["runtime"] == "docker" and ready["private_address"] == gateway, ready
        s.host_id = host["id"]
        yield s
    finally:
        down = s.run("--profile", "agent", "down", "--volumes", "--remove-orphans", "--timeout", "10")
        remove_scope(docker, scope)  # environments the agent made, if a run failed before deleting them
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-3000:]
        left = leftovers(docker, project, scope)
        assert not left, left


def env_status(stack: Stack, env_id: str) -> str | None:
    code, env = stack.request("GET", f"/api/v1/environments/{env_id}", token=stack.token)
    return env["status"] if code == 200 else f"http {code}"
