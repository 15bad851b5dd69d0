"""The compose stack (deploy/compose) on this machine: figures for deploy/README.md.

Brings the stack up exactly as tests/integration/test_deploy_compose.py does (images
built by deploy/compose/build-images.sh, cached; N serve replicas behind nginx, a
worker, the agent on this Docker with fake GPUs, PostgreSQL, Redis), then measures,
with a baseline from the same run:

- **lifecycle**: create → running, stop → stopped, start → running, delete → gone (404
  and Docker holds neither container nor volume), each through nginx and the platform,
  polled every 0.1 s; baseline: the same image with plain `docker run -d` (same CPU and
  memory limits, a named volume) → `docker stop` → `docker start` → `docker rm -f` +
  `docker volume rm`, each until Docker says so.
- **API reads**: `GET /api/v1/environments?workspace_id=…` (a hot read) with C concurrent
  keep-alive clients for D seconds, through nginx to all replicas, and straight to one
  replica (no nginx): requests/s, p50, p99.

The load generator runs on the same machine as the stack: on a small machine it takes
CPU from the servers, so the figures are a floor. The load average is printed.

    .venv/bin/python bench/deploy_compose.py [--replicas 2] [--reps 3] [--concurrency 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from tests.support.components import docker_with_image
from tests.support.compose_stack import GPU, Stack, compose_stack, env_status

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")


def until(check, timeout: float = 180, every: float = 0.1) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("timed out")
        time.sleep(every)
    return time.monotonic() - started


def timed(action, check, timeout: float = 180) -> float:
    started = time.monotonic()
    action()
    until(check, timeout)
    return time.monotonic() - started


def platform_lifecycle(s: Stack, workspace_id: str, rep: int) -> dict[str, float]:
    out: dict[str, float] = {}
    env_id = ""

    def create() -> None:
        nonlocal env_id
        code, env = s.request("POST", "/api/v1/environments",
                              {"name": f"bench-{rep}", "workspace_id": workspace_id, "gpu_count": 1, "gpu_model": GPU,
                               "cpu_cores": 1, "memory_gib": 1}, token=s.token)
        assert code == 202, env
        env_id = env["id"]

    out["create → running"] = timed(create, lambda: env_status(s, env_id) == "running")
    out["stop → stopped"] = timed(lambda: s.request("POST", f"/api/v1/environments/{env_id}/stop", token=s.token),
                                  lambda: env_status(s, env_id) == "stopped")
    out["start → running"] = timed(lambda: s.request("POST", f"/api/v1/environments/{env_id}/start", {}, token=s.token),
                                   lambda: env_status(s, env_id) == "running")
    scoped = {"label": f"remotegpu.scope={s.scope}"}
    out["delete → gone"] = timed(
        lambda: s.request("DELETE", f"/api/v1/environments/{env_id}", token=s.token),
        lambda: env_status(s, env_id) == "http 404" and not s.docker.containers.list(all=True, filters=scoped)
        and not s.docker.volumes.list(filters=scoped))
    return out


def raw_lifecycle(docker) -> dict[str, float]:
    name = f"rgbench-raw-{uuid.uuid4().hex[:8]}"
    out: dict[str, float] = {}

    def state() -> str:
        return docker.api.inspect_container(name)["State"]["Status"]

    def sh(*args: str) -> None:
        subprocess.run(["docker", *args], check=True, capture_output=True)

    try:
        out["create → running"] = timed(
            lambda: sh("run", "-d", "--name", name, "--cpus", "1", "--memory", "1g", "-v", f"{name}:/root/workspace", IMAGE),
            lambda: state() == "running")
        out["stop → stopped"] = timed(lambda: sh("stop", "-t", "10", name), lambda: state() == "exited")
        out["start → running"] = timed(lambda: sh("start", name), lambda: state() == "running")

        def gone() -> bool:
            return not docker.containers.list(all=True, filters={"name": name}) and not docker.volumes.list(filters={"name": name})

        out["delete → gone"] = timed(lambda: (sh("rm", "-f", name), sh("volume", "rm", name)), gone)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)
    return out


async def read_load(url: str, token: str, host: str | None, concurrency: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    if host:
        headers["Host"] = host
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        stop_at = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5)
    args = p.parse_args()
    docker = docker_with_image(IMAGE)
    t0 = time.monotonic()
    with compose_stack(docker, IMAGE, replicas=args.replicas) as s:
        ready = time.monotonic() - t0
        code, ws = s.request("GET", "/api/v1/workspaces", token=s.token)
        workspace_id = ws["items"][0]["id"]
        platform: list[dict[str, float]] = []
        raw: list[dict[str, float]] = []
        for rep in range(args.reps):  # alternate which goes first
            if rep % 2:
                raw.append(raw_lifecycle(docker))
                platform.append(platform_lifecycle(s, workspace_id, rep))
            else:
                platform.append(platform_lifecycle(s, workspace_id, rep))
                raw.append(raw_lifecycle(docker))
        # One environment exists while reading (a non-empty list).
        code, env = s.request("POST", "/api/v1/environments",
                              {"name": "bench-read", "workspace_id": workspace_id, "gpu_count": 0, "cpu_cores": 1,
                               "memory_gib": 1}, token=s.token)
        assert code == 202, env
        until(lambda: env_status(s, env["id"]) == "running")
        path = f"/api/v1/environments?workspace_id={workspace_id}"
        replicas = docker.containers.list(filters={"label": [f"com.docker.compose.project={s.project}",
                                                             "com.docker.compose.service=serve"]})
        one = next(iter(replicas[0].attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        reads = {}
        for label, url, host in ((f"nginx → {len(replicas)} replicas", s.url + path, None),
                                 ("one replica, no nginx (baseline)", f"http://{one}:8080{path}", f"127.0.0.1:{s.port}")):
            asyncio.run(read_load(url, s.token, host, args.concurrency, 1))  # warm-up
            reads[label] = asyncio.run(read_load(url, s.token, host, args.concurrency, args.seconds))
        s.request("DELETE", f"/api/v1/environments/{env['id']}", token=s.token)
        until(lambda: env_status(s, env["id"]) == "http 404")
        load = os.getloadavg()
    print(f"\ncompose stack: {args.replicas} serve replicas; stack up (images cached) → console answers through "
          f"nginx: {s.up_seconds:.1f} s; + host added and agent ready: {ready:.1f} s")
    print(f"load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"| step (median of {args.reps}) | platform via nginx (s) | raw docker (s) | ratio |")
    print("|---|---|---|---|")
    for step in platform[0]:
        a = statistics.median(r[step] for r in platform)
        b = statistics.median(r[step] for r in raw)
        print(f"| {step} | {a:.2f} | {b:.2f} | {a / b:.1f}× |")
    print(f"\n| GET environments list, {args.concurrency} clients, {args.seconds:.0f} s | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for label, (rps, p50, p99) in reads.items():
        print(f"| {label} | {rps:.0f} | {p50:.1f} | {p99:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
