"""The Jupyter proxy for an environment on a Kubernetes host: it dials the environment's Pod
(its IP from the Pod informer, Jupyter's container port), never the host's published port
(a Kubernetes host publishes none: whatever listens there is not the environment, and must
not get its Jupyter token); a Pod without an address yet is waited for, then 502, and looked
up again on every try rather than remembered. (The real API server: tests/integration/
test_kubernetes_platform.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web

from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.fleet.models import Host
from remotegpu.entrypoints.http import local_host, proxy as proxy_module
from remotegpu.entrypoints.http.keys import CONTAINER
from remotegpu.entrypoints.http.proxy import JupyterProxy
from tests.unit.test_proxy_direct_route import ENV, NoActivity, start_jupyter


class FakePods:
    """KubeAppEndpoints' lookup: the Pod's (IP, port) once it has one."""

    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None
        self.asked: list[tuple[str, int]] = []

    def address_of(self, env_id: str, port: int):
        self.asked.append((env_id, port))
        return self.address


class Endpoints:
    def __init__(self, pods: FakePods) -> None:
        self.pods = pods

    def address(self, env_id: str, port: int):
        return self.pods.address_of(env_id, port)


async def platform(aiohttp_client, published_port: int, pods: FakePods):
    app = web.Application()
    app[CONTAINER] = SimpleNamespace(environment_entry=lambda: NoActivity(), settings=lambda: SimpleNamespace(live_recheck_seconds=0.2))
    proxy = JupyterProxy(app)
    app.cleanup_ctx.append(proxy.ctx)
    host = Host(id="h-k8s", name="cluster", private_address="127.0.0.1", runtime="kubernetes")
    upstream = Upstream(env_id=ENV, host=host, port=published_port, jupyter_token="tok")

    async def handle(request: web.Request) -> web.StreamResponse:
        return await proxy.serve(request, upstream)

    app.router.add_route("*", "/{tail:.*}", handle)
    state = local_host._of(app)
    state["host_id"] = None
    state["kube_apps"] = Endpoints(pods)
    return await aiohttp_client(app), proxy


async def test_a_kubernetes_environment_is_reached_at_its_pods_address_never_the_published_port(
        aiohttp_server, aiohttp_client, monkeypatch):
    monkeypatch.setattr(proxy_module, "RESTART_WAIT_SECONDS", 0.3)
    monkeypatch.setattr(proxy_module, "NOT_LISTENING_RESOLVE_SECONDS", 0.05)
    # Something answers on the host's "published" port: a fallback there would get a 200
    # "served_by: published" (and the token); the proxy must answer 502 instead.
    trapped: list[str] = []

    async def trap_handler(request: web.Request) -> web.Response:
        trapped.append(request.path)
        return web.json_response({"served_by": "published"})

    trap_app = web.Application()
    trap_app.router.add_get("/{tail:.*}", trap_handler)
    trap = await aiohttp_server(trap_app)
    pods = FakePods()
    client, proxy = await platform(aiohttp_client, trap.port, pods)

    r = await client.get("/api/status")  # the Pod has no address yet: waited for, then 502
    assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_unavailable"
    assert len(pods.asked) > 1 and set(pods.asked) == {(ENV, 8888)}  # asked again while waiting
    assert ENV not in proxy._direct  # nothing remembered: the next request asks again

    pod = await start_jupyter(aiohttp_server, "pod")
    pods.address = (pod.host, pod.port)
    for _ in range(2):
        r = await client.get("/api/status")
        assert r.status == 200 and (await r.json())["served_by"] == "pod"
    # The same for a websocket: the Pod, never the published port.
    pods.address = None
    proxy._direct.clear()
    r = await client.get("/api/kernels/k/channels", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status == 502
    assert trapped == []  # the published port never saw a request
