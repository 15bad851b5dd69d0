"""The Jupyter reverse proxy's cost: the app host {env}--jupyter.localhost vs the container direct.

Runs the real ``remotegpu serve`` on Docker (embedded agent, SQLite), starts one
environment, puts a 1 MiB file in its workspace, then in the same run measures:

* small: ``GET api/status`` — sequential latency (p50/p99) on one keep-alive
  connection, and throughput with 16 concurrent clients;
* large: ``GET files/blob.bin`` (1 MiB) —
  - latency: p50 of single downloads, the paths taking turns download by download, so
    whatever else loads the machine meanwhile weighs on all alike (each download finds
    the other processes' caches cold);
  - back to back: downloads in blocks of ``--block`` per path, the paths taking turns
    block by block; p50, and MB/s over all of them (the mean: it takes in the rare
    stalls of 50-100 ms that every path shows, Jupyter's or the client's garbage
    collection, so it varies more from run to run than the p50s).

Through the proxy (on the app's own host, with the app cookie the handshake gives); direct to Jupyter's published loopback port, the way
into the container without the platform (``Authorization: token``); and, for reference,
to the container's own IP, which skips Docker's port proxy (the route the platform proxy
itself takes to the embedded host's containers). Aim (issue #4): the proxy adds < 2 ms
p50 to small requests and < 20 % to large transfers, against ``direct``.

The server runs with the default 5 s heartbeat: agents are woken at once by the long
poll, and a shorter beat only adds load to the process being measured.

    .venv/bin/python bench/proxy.py [--small 1000] [--large 100] [--block 20]
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
from tests.support.app_hosts import LoopbackResolver, app_origin, console_login, handshake  # noqa: E402
from tests.support.app_hosts import browser_session  # noqa: E402
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


async def app_cookie(console: str, env_id: str, password: str) -> str:
    """Sign in as a browser would: console session, then the app handshake."""
    async with browser_session() as browser:
        await console_login(browser, console, "bench", password)
        await handshake(browser, console, env_id, int(console.rsplit(":", 1)[1]))
        return next(c.value for c in browser.cookie_jar if c.key == "rgpu_app")


async def measure(proxy_base: str, direct_base: str, container_base: str, cookie: str, token: str, args) -> list[tuple]:
    rows = []
    targets = {
        "proxy": (proxy_base, {"Cookie": f"rgpu_app={cookie}"}),
        "direct": (direct_base, {"Authorization": f"token {token}"}),
        "container": (container_base, {"Authorization": f"token {token}"}),
    }
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, resolver=LoopbackResolver())) as session:
        for name, (base, headers) in targets.items():  # warm up both paths
            await sequential(session, base + "api/status", headers, 50)
            await sequential(session, base + "files/blob.bin", headers, 5)
        results = {}
        for name, (base, headers) in targets.items():
            small, _ = await sequential(session, base + "api/status", headers, args.small)
            rps = await concurrent(session, base + "api/status", headers, 16, args.seconds)
            results[name] = (small, rps, [], [])
        for _ in range(args.large):  # interleaved: proxy, direct, container, proxy, ...
            for name, (base, headers) in targets.items():
                large, size = await sequential(session, base + "files/blob.bin", headers, 1)
                assert size == MIB, size
                results[name][2].extend(large)
        for _ in range(max(1, args.large // args.block)):  # sustained, block by block
            for name, (base, headers) in targets.items():
                block, _ = await sequential(session, base + "files/blob.bin", headers, args.block)
                results[name][3].extend(block)
        for name, (small, rps, large, sustained) in results.items():
            mbps = MIB * len(sustained) / sum(sustained) / 1e6
            rows.append((name, pct(small, 0.5), pct(small, 0.99), rps, pct(large, 0.5), pct(sustained, 0.5), mbps))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="sequential small requests per path")
    parser.add_argument("--large", type=int, default=100, help="sequential 1 MiB downloads per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the concurrent small-request run")
    parser.add_argument("--block", type=int, default=20, help="back-to-back 1 MiB downloads per block (sustained MB/s)")
    args = parser.parse_args()
    import docker

    client = docker.from_env()
    scope = f"bench{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp, live_server(
        Path(tmp), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="1xNVIDIA L4 24GB", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
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
            path = "/"  # JupyterLab's base_url: it has a host of its own
            proxy_base = app_origin(env["id"], int(server.url.rsplit(":", 1)[1])) + path
            direct_base = f"http://127.0.0.1:{jport}{path}"
            container.reload()
            ip = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
            container_base = f"http://{ip}:8888{path}"
            deadline = time.monotonic() + 60
            while True:  # Jupyter takes a few seconds to come up
                try:
                    asyncio.run(measure_once(direct_base, token))
                    break
                except Exception:  # noqa: BLE001
                    assert time.monotonic() < deadline, "JupyterLab did not come up"
                    time.sleep(0.5)
            cookie = asyncio.run(app_cookie(server.url, env["id"], "correct horse battery"))
            rows = asyncio.run(measure(proxy_base, direct_base, container_base, cookie, token, args))
        finally:
            for c in client.containers.list(all=True, filters={"label": f"remotegpu.scope={scope}"}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"label": f"remotegpu.scope={scope}"}):
                v.remove(force=True)
    print(f"\nJupyter through the platform proxy vs direct ({args.small} small, {args.large} x 1 MiB taking turns, "
          f"{max(1, args.large // args.block)} blocks of {args.block} x 1 MiB back to back; 16 concurrent clients for {args.seconds:.0f} s)\n")
    print(f"{'path':<10} {'small p50 ms':>13} {'small p99 ms':>13} {'small req/s (c16)':>18} {'1 MiB p50 ms':>13} "
          f"{'back-to-back p50 ms':>20} {'back-to-back MB/s':>18}")
    for name, p50, p99, rps, lp50, bp50, mbps in rows:
        print(f"{name:<10} {p50:>13.2f} {p99:>13.2f} {rps:>18.0f} {lp50:>13.2f} {bp50:>20.2f} {mbps:>18.0f}")
    by = {row[0]: row for row in rows}

    def versus(base: str) -> str:
        (_, p50p, _, _, lp50p, bp50p, mbp), (_, p50b, _, _, lp50b, bp50b, mbb) = by["proxy"], by[base]
        return (f"small requests {p50p - p50b:+.2f} ms p50; 1 MiB p50 {(lp50p / lp50b - 1) * 100:+.0f} % taking turns, "
                f"{(bp50p / bp50b - 1) * 100:+.0f} % back to back (MB/s {(mbp / mbb - 1) * 100:+.0f} %)")

    print(f"\nproxy vs direct:       {versus('direct')}\n  aim: < 2 ms for small requests, < 20 % for 1 MiB")
    print(f"proxy vs container IP: {versus('container')}")


async def measure_once(base: str, token: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "api/status", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200


if __name__ == "__main__":
    main()
