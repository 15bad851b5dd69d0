"""Inference services: the router's overhead and the cold start, each against its
baseline in the same run.

Runs the real ``remotegpu serve`` on Docker (embedded agent, SQLite, fake GPUs), then:

* **router overhead**: one public service with one warm replica (a tiny threaded Python
  HTTP server from the base image); ``GET /`` through the router
  (``{id}--serve.localhost``) and straight to the replica's published port, taking
  turns request by request on keep-alive connections; p50/p99 of each and the
  difference. Aim (issue #19): p50 +< 1 ms, p99 +< 5 ms.
* **cold start**: a service scaled to zero (idle 2 s); the time from a request to its
  answer through the platform (the held request, placement, agent woken, container
  start, health probe) vs ``docker run`` of the same image and command until its first
  HTTP answer, taking turns. Aim: ≤ 1.3×. (The very first start of a service also
  creates its network: printed apart.)

    .venv/bin/python bench/inference.py [--requests 1000] [--cold 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.app_hosts import LoopbackResolver  # noqa: E402
from tests.support.live_server import free_port, live_server  # noqa: E402

IMAGE = "remotegpu/base:latest"
SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def do_GET(self):\n"
    "        self.wfile.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')  # one write: no Nagle stall\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ.get('PORT', '8000'))), H).serve_forever()\n"
)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def create(server, token, ws, name, min_replicas, idle=3600.0):
    code, svc = server.request("POST", "/api/v1/inference-services", {
        "workspace_id": ws, "name": name, "image": IMAGE, "command": ["python3", "-c", SERVER], "port": 8000,
        "min_replicas": min_replicas, "max_replicas": 1, "public": True, "scale_to_zero_after_s": idle,
        "scale_down_delay_s": 1,
    }, token=token)
    assert code == 201, svc
    return svc


async def overhead(router_url: str, direct_url: str, n: int) -> tuple[list[float], list[float]]:
    via, direct = [], []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver())) as a, \
            aiohttp.ClientSession() as b:
        for session, url in ((a, router_url), (b, direct_url)):  # warm both connections
            for _ in range(20):
                async with session.get(url) as r:
                    await r.read()
        for _ in range(n):
            for session, url, out in ((a, router_url, via), (b, direct_url, direct)):
                start = time.perf_counter()
                async with session.get(url) as r:
                    assert r.status == 200 and await r.read() == b"ok"
                out.append(time.perf_counter() - start)
    return via, direct


async def first_answer(url: str, timeout: float = 180) -> float:
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver())) as s:
        while True:
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except aiohttp.ClientError:
                pass
            if time.perf_counter() - start > timeout:
                raise TimeoutError(url)
            await asyncio.sleep(0.02)


def raw_docker_run() -> float:
    port = free_port()
    start = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", "--entrypoint", "python3", IMAGE,
                          "-c", SERVER], check=True, capture_output=True, text=True).stdout.strip()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.02)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()
    scope = f"bench-inf-{int(time.time())}"
    import docker

    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with live_server(Path(tmp), REMOTEGPU_RUNTIME="docker", REMOTEGPU_DOCKER_SCOPE=scope,
                             REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB", REMOTEGPU_LOG_LEVEL="WARNING") as server:
                token = server.signup("bench")
                _, spaces = server.request("GET", "/api/v1/workspaces", token=token)
                ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
                port = server.url.rsplit(":", 1)[1]
                svc = create(server, token, ws, "warm", 1)
                router_url = f"http://{svc['id']}--serve.localhost:{port}/"
                asyncio.run(first_answer(router_url))
                container = next(c for c in client.containers.list(filters={"label": f"remotegpu.job_scope={scope}"})
                                 if c.labels.get("remotegpu.job_id") == f"svc-{svc['id']}")
                host_port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
                direct_url = f"http://127.0.0.1:{host_port}/"
                via, direct = asyncio.run(overhead(router_url, direct_url, args.requests))
                server.request("DELETE", f"/api/v1/inference-services/{svc['id']}", token=token)
                # One service, scaled to zero between runs (after 2 s idle): the first request
                # of each run is a cold start (run 1 also makes the service's network).
                colds, raws = [], []
                svc = create(server, token, ws, "cold", 0, idle=2.0)
                cold_url = f"http://{svc['id']}--serve.localhost:{port}/"
                for i in range(args.cold + 1):
                    raws.append(raw_docker_run())
                    deadline = time.monotonic() + 120
                    while True:
                        _, now = server.request("GET", f"/api/v1/inference-services/{svc['id']}", token=token)
                        gone = not now["replicas"] and not [c for c in client.containers.list(all=True, filters={
                            "label": f"remotegpu.job_scope={scope}"}) if c.labels.get("remotegpu.job_id") == f"svc-{svc['id']}"]
                        if gone or time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
                    colds.append(asyncio.run(first_answer(cold_url)))
                first_cold, colds, raws = colds[0], colds[1:], raws[1:]
                server.request("DELETE", f"/api/v1/inference-services/{svc['id']}", token=token)
        finally:
            for c in client.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}):
                c.remove(force=True)
            for n in client.networks.list(filters={"label": f"remotegpu.job_scope={scope}"}):
                n.remove()
            from tests.support.components import remove_scope

            remove_scope(client, scope)
    print(f"router overhead over {args.requests} requests each, taking turns (ms):")
    print(f"  {'path':<8} {'p50':>8} {'p99':>8}")
    print(f"  {'router':<8} {pct(via, .5):8.3f} {pct(via, .99):8.3f}")
    print(f"  {'direct':<8} {pct(direct, .5):8.3f} {pct(direct, .99):8.3f}")
    print(f"  added: p50 +{pct(via, .5) - pct(direct, .5):.3f} ms (aim < 1), p99 +{pct(via, .99) - pct(direct, .99):.3f} ms (aim < 5)")
    print(f"first cold start of a new service (makes its network): {first_cold:.2f} s")
    print(f"cold start from zero to first answer, {args.cold} runs (s): platform {statistics.median(colds):.2f} "
          f"(all {', '.join(f'{c:.2f}' for c in colds)}), raw docker run {statistics.median(raws):.2f} "
          f"(all {', '.join(f'{r:.2f}' for r in raws)}): {statistics.median(colds) / statistics.median(raws):.2f}× (aim ≤ 1.3×)")


if __name__ == "__main__":
    main()
