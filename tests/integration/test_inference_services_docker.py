"""Inference services on real Docker through the platform's router: answers (with a
cold start from zero, no error), streams, scales 1 → N under a load generator and back,
to zero and back, rolls a new version out without a failed request; nothing left."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.test_environment_crash_recovery import ADMIN, wait_until
from tests.support.components import docker_with_image, remove_scope
from tests.support.app_hosts import LoopbackResolver
from tests.support.live_server import live_server

IMAGE = "remotegpu/base:latest"
SERVER = r"""
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/stream"):
            self.send_response(200); self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            for i in range(3):
                data = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush(); time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n"); return
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.split("=", 1)[1]))
        body = f"{os.environ['REMOTEGPU_REPLICA_ID']} v{os.environ.get('VERSION', '1')}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    scope = f"svc{int(time.time())}"
    try:
        with live_server(tmp_path_factory.mktemp("svc"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"svc-{scope}") as server:
            token = server.signup("server")
            _, spaces = server.request("GET", "/api/v1/workspaces", token=token)
            ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
            yield server, docker, token, ws, scope
    finally:
        for c in docker.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}):
            c.remove(force=True)
        for n in docker.networks.list(filters={"label": f"remotegpu.job_scope={scope}"}):
            n.remove()
        remove_scope(docker, scope)


def service(server, token, sid) -> dict:
    code, body = server.request("GET", f"/api/v1/inference-services/{sid}", token=token)
    assert code == 200, body
    return body


def replicas(docker, scope, sid, running_only=True):
    # sparse: one Docker call (a full list inspects each container, and one removed in
    # between fails the whole list with 404)
    found = docker.containers.list(all=not running_only, sparse=True, filters={"label": f"remotegpu.job_scope={scope}"})
    return [c for c in found if (c.attrs.get("Labels") or {}).get("remotegpu.job_id") == f"svc-{sid}"]


async def load(url: str, headers: dict, clients: int, seconds: float, path: str = "/") -> list[tuple[int, str]]:
    results: list[tuple[int, str]] = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(resolver=LoopbackResolver(), limit=0)) as http:
        async def one():
            while time.monotonic() < end:
                try:
                    async with http.get(url + path.lstrip("/"), timeout=aiohttp.ClientTimeout(total=150)) as r:
                        results.append((r.status, await r.text()))
                except Exception as exc:  # noqa: BLE001 - counted as a failure
                    results.append((0, repr(exc)))
        await asyncio.gather(*(one() for _ in range(clients)))
    return results


def test_service_through_the_router_scales_and_rolls_without_errors(world):
    server, docker, token, ws, scope = world
    code, svc = server.request("POST", "/api/v1/inference-services", {
        "workspace_id": ws, "name": "echo", "image": IMAGE, "command": ["python3", "-c", SERVER], "port": 8000,
        "health_path": "/", "min_replicas": 0, "max_replicas": 3, "target_concurrency": 1,
        "scale_down_delay_s": 6, "scale_to_zero_after_s": 10,
    }, token=token)
    assert code == 201, svc
    sid = svc["id"]
    port = server.url.rsplit(":", 1)[1]
    url = f"http://{sid}--serve.localhost:{port}/"
    assert svc["url"] == url
    code, tok = server.request("POST", f"/api/v1/inference-services/{sid}/tokens", token=token)
    headers = {"Authorization": f"Bearer {tok['token']}"}

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver())) as http:
            async with http.get(url) as r:
                assert r.status == 401  # private: a token of the service is needed
            # cold start from zero: the request is held until a replica is ready
            started = time.monotonic()
            async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=150)) as r:
                assert r.status == 200, await r.text()
                assert (await r.text()).endswith(" v1")
            cold = time.monotonic() - started
            # streaming passes through as it comes
            async with http.get(url + "stream", headers=headers) as r:
                arrivals = []
                async for chunk in r.content.iter_any():
                    arrivals.append((time.monotonic(), chunk))
                body = b"".join(c for _, c in arrivals)
                assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
                assert arrivals[-1][0] - arrivals[0][0] > 0.3  # not buffered into one piece
        return cold

    cold = asyncio.run(scenario())
    assert cold < 60
    # scale up under load: 6 clients of 0.5 s requests at a target of 1 in flight per replica
    results = asyncio.run(load(url, headers, 6, 25, "/slow?t=0.5"))
    assert results and all(s == 200 for s, _ in results), [r for r in results if r[0] != 200][:3]
    assert len({body.split()[0] for _, body in results}) >= 2, "load was served by more than one replica"
    peak = service(server, token, sid)
    assert peak["desired_replicas"] >= 2
    # ... and back down, then to zero (no request for scale_to_zero_after_s)
    wait_until(lambda: service(server, token, sid)["desired_replicas"] <= 1, 60, "scale down to 1", 0.5)
    wait_until(lambda: service(server, token, sid)["desired_replicas"] == 0 and not service(server, token, sid)["replicas"],
               60, "scale to zero", 0.5)
    wait_until(lambda: not replicas(docker, scope, sid, running_only=False), 30, "replica containers removed")
    # the next request after zero: a cold start, no error
    results = asyncio.run(load(url, headers, 1, 0.1))
    assert results[0][0] == 200, results

    # rolling update under load: no request fails, the new version takes over
    async def rolling():
        task = asyncio.create_task(load(url, headers, 3, 30, "/slow?t=0.2"))
        await asyncio.sleep(2)
        code, body = await asyncio.to_thread(server.request, "PATCH", f"/api/v1/inference-services/{sid}",
                                             {"env": {"VERSION": "2"}}, token)
        assert code == 200 and body["generation"] == 1, body
        return await task

    results = asyncio.run(rolling())
    assert results and all(s == 200 for s, _ in results), [r for r in results if r[0] != 200][:3]
    assert results[-1][1].endswith(" v2") and any(b.endswith(" v1") for _, b in results)
    wait_until(lambda: all(r["generation"] == 1 for r in service(server, token, sid)["replicas"]), 30, "old replicas gone", 0.5)
    stats = service(server, token, sid)["stats"]
    assert stats["errors"] == 0 and stats["cold_starts"] >= 2 and stats["latency_p50_ms"] is not None
    assert stats["rps_1m"] > 0

    code, _ = server.request("DELETE", f"/api/v1/inference-services/{sid}", token=token)
    assert code == 204
    wait_until(lambda: not replicas(docker, scope, sid, running_only=False), 30, "every replica removed")
    wait_until(lambda: not docker.networks.list(names=[f"rgpu-job-svc-{sid}"]), 30, "the service network removed")
