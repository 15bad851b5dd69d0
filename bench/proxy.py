"""The Jupyter reverse proxy's cost: /proxy/environments/{id}/jupyter/ vs the container direct.

Runs the real ``remotegpu serve`` on Docker (embedded agent, SQLite), starts one
environment, puts a 1 MiB file in its workspace, then in the same run measures:

* small: ``GET api/status`` — sequential latency (p50/p99) on one keep-alive
  connection, and throughput with 16 concurrent clients;
* large: ``GET files/blob.bin`` (1 MiB) — sequential latency and MB/s, the two paths
  taking turns download by download, so whatever else loads the machine meanwhile
  weighs on both alike.

Each through the proxy (Bearer token) and direct to Jupyter's loopback port
(``Authorization: token``). Aim (issue #4): the proxy adds < 2 ms p50 to small requests
and < 20 % to large transfers.

    .venv/bin/python bench/proxy.py [--small 1000] [--large 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live_server import live_server  # noqa: E402

IMAGE = "remotegpu/base:latest"
MIB = 1024 * 1024


async def sequential(session: aiohttp.ClientSession, url: str, headers: dict, n: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as r:
            body = await r.read()
            assert r.status == 200, (r.status, body[:200])
        times.append(time.perf_counter() - start)
        size = len(body)
    return times, size


async def concurrent(session: aiohttp.ClientSession, url: str, headers: dict, clients: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.get(url, headers=headers) as r:
                await r.read()
                assert r.status == 200
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.perf_counter() - start)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def measure(proxy_base: str, direct_base: str, bearer: str, token: str, args) -> list[tuple]:
    rows = []
    targets = {
        "proxy": (proxy_base, {"Authorization": f"Bearer {bearer}"}),
        "direct": (direct_base, {"Authorization": f"token {token}"}),
    }
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        for name, (base, headers) in targets.items():  # warm up both paths
            await sequential(session, base + "api/status", headers, 50)
            await sequential(session, base + "files/blob.bin", headers, 5)
        results = {}
        for name, (base, headers) in targets.items():
            small, _ = await sequential(session, base + "api/status", headers, args.small)
            rps = await concurrent(session, base + "api/status", headers, 16, args.seconds)
            results[name] = (small, rps, [])
        for _ in range(args.large):  # interleaved: proxy, direct, proxy, direct, ...
            for name, (base, headers) in targets.items():
                large, size = await sequential(session, base + "files/blob.bin", headers, 1)
                assert size == MIB, size
                results[name][2].extend(large)
        for name, (small, rps, large) in results.items():
            mbps = MIB * len(large) / sum(large) / 1e6
            rows.append((name, pct(small, 0.5), pct(small, 0.99), rps, pct(large, 0.5), mbps))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="sequential small requests per path")
    parser.add_argument("--large", type=int, default=100, help="sequential 1 MiB downloads per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the concurrent small-request run")
    args = parser.parse_args()
    import docker

    client = docker.from_env()
    scope = f"bench{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp, live_server(
        Path(tmp), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="1xNVIDIA L4 24GB", REMOTEGPU_HEARTBEAT_SECONDS="1",
        REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
    ) as server:
        try:
            bearer = server.signup("bench")
            _, ws = server.request("GET", "/api/v1/workspaces", token=bearer)
            _, env = server.request("POST", "/api/v1/environments", {
                "name": "bench", "workspace_id": ws["items"][0]["id"], "gpu_count": 0, "cpu_cores": 2, "memory_gib": 2,
            }, token=bearer)
            deadline = time.monotonic() + 90
            while env["status"] != "running":
                assert time.monotonic() < deadline, env
                time.sleep(0.3)
                _, env = server.request("GET", f"/api/v1/environments/{env['id']}", token=bearer)
            container = client.containers.list(filters={"label": f"remotegpu.env_id={env['id']}"})[0]
            container.exec_run(["sh", "-c", "head -c 1048576 /dev/urandom > /root/workspace/blob.bin"])
            token = dict(v.split("=", 1) for v in container.attrs["Config"]["Env"])["REMOTEGPU_JUPYTER_TOKEN"]
            jport = {p["purpose"]: p["port"] for p in env["ports"]}["jupyter"]
            path = f"/proxy/environments/{env['id']}/jupyter/"
            proxy_base, direct_base = server.url + path, f"http://127.0.0.1:{jport}{path}"
            deadline = time.monotonic() + 60
            while True:  # Jupyter takes a few seconds to come up
                try:
                    asyncio.run(measure_once(direct_base, token))
                    break
                except Exception:  # noqa: BLE001
                    assert time.monotonic() < deadline, "JupyterLab did not come up"
                    time.sleep(0.5)
            rows = asyncio.run(measure(proxy_base, direct_base, bearer, token, args))
        finally:
            for c in client.containers.list(all=True, filters={"label": f"remotegpu.scope={scope}"}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"label": f"remotegpu.scope={scope}"}):
                v.remove(force=True)
    print(f"\nJupyter through the platform proxy vs direct ({args.small} small, {args.large} x 1 MiB, sequential; "
          f"16 concurrent clients for {args.seconds:.0f} s)\n")
    print(f"{'path':<8} {'small p50 ms':>13} {'small p99 ms':>13} {'small req/s (c16)':>18} {'1 MiB p50 ms':>13} {'1 MiB MB/s':>11}")
    for name, p50, p99, rps, lp50, mbps in rows:
        print(f"{name:<8} {p50:>13.2f} {p99:>13.2f} {rps:>18.0f} {lp50:>13.2f} {mbps:>11.0f}")
    (_, p50p, _, _, lp50p, mbp), (_, p50d, _, _, lp50d, mbd) = rows
    print(f"\nproxy adds {p50p - p50d:+.2f} ms p50 to small requests (aim < 2 ms) and "
          f"{(lp50p / lp50d - 1) * 100:+.0f} % to a 1 MiB transfer's p50 (throughput {(mbd / mbp - 1) * 100:+.0f} %; aim < 20 %)")


async def measure_once(base: str, token: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "api/status", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200


if __name__ == "__main__":
    main()
