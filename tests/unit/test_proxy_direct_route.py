"""The Jupyter proxy's direct route to the embedded host's containers: used when the
local Docker runtime knows the container's address, skipped for other hosts, and
abandoned for the published port when that address refuses the connection."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web

from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.fleet.models import Host
from remotegpu.entrypoints.http import local_host
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL
from remotegpu.entrypoints.http.proxy import PATH, JupyterProxy

ENV = "0b6c3d52-5f8e-4f49-9a57-2a4c1f1f0a11"


class FakeDocker:
    """The local DockerRuntime's lookup; the fake container listens on ``route``."""

    def __init__(self, route):
        self.route, self.asked = route, []

    async def container_endpoint(self, env_id, container_port):
        self.asked.append((env_id, container_port))
        return self.route


class NoActivity:
    async def record_activity(self, env_id):
        pass


NAME = web.AppKey("name", str)


async def jupyter(request: web.Request) -> web.Response:
    assert request.headers["Authorization"] == "token tok"
    return web.json_response({"served_by": request.app[NAME], "path": request.path})


async def start_jupyter(aiohttp_server, name: str):
    app = web.Application()
    app[NAME] = name
    app.router.add_get("/{tail:.*}", jupyter)
    return await aiohttp_server(app)


async def platform(aiohttp_client, published_port: int, docker: FakeDocker, *, local: bool):
    app = web.Application()
    app[CONTAINER] = SimpleNamespace(environment_entry=lambda: NoActivity())
    proxy = JupyterProxy(app)
    app.cleanup_ctx.append(proxy.ctx)
    host = Host(id="h-local", name="box", private_address="127.0.0.1")
    upstream = Upstream(env_id=ENV, host=host, port=published_port, jupyter_token="tok")

    async def resolve(user, env_id):
        return upstream

    proxy._resolve = resolve  # authorisation is tested elsewhere (tests/integration)

    @web.middleware
    async def signed_in(request, handler):
        request[PRINCIPAL] = SimpleNamespace(user=SimpleNamespace(id="u1"))
        return await handler(request)

    app.middlewares.append(signed_in)
    app.router.add_route("*", PATH, proxy.handle)
    state = local_host._of(app)
    state["host_id"] = "h-local" if local else "h-elsewhere"
    state["docker_runtime"] = docker
    return await aiohttp_client(app), proxy


async def test_the_embedded_hosts_container_is_reached_directly(aiohttp_server, aiohttp_client):
    published = await start_jupyter(aiohttp_server, "published")
    direct = await start_jupyter(aiohttp_server, "container")
    docker = FakeDocker((direct.host, direct.port))
    client, _ = await platform(aiohttp_client, published.port, docker, local=True)
    for _ in range(3):
        r = await client.get(f"/proxy/environments/{ENV}/jupyter/api/status")
        assert r.status == 200
        assert (await r.json()) == {"served_by": "container", "path": f"/proxy/environments/{ENV}/jupyter/api/status"}
    assert docker.asked == [(ENV, 8888)]  # Jupyter's container port, looked up once, then cached


async def test_other_hosts_use_the_published_port(aiohttp_server, aiohttp_client, unused_tcp_port):
    published = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("127.0.0.1", unused_tcp_port))
    client, _ = await platform(aiohttp_client, published.port, docker, local=False)
    r = await client.get(f"/proxy/environments/{ENV}/jupyter/api/status")
    assert (await r.json())["served_by"] == "published"
    assert docker.asked == []


async def test_a_refused_direct_route_falls_back_to_the_published_port(aiohttp_server, aiohttp_client, unused_tcp_port):
    published = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("127.0.0.1", unused_tcp_port))  # nothing listens there
    client, proxy = await platform(aiohttp_client, published.port, docker, local=True)
    r = await client.get(f"/proxy/environments/{ENV}/jupyter/api/status")
    assert r.status == 200 and (await r.json())["served_by"] == "published"
    assert ENV not in proxy._direct  # forgotten: the next request looks again


async def leaky(request: web.Request) -> web.Response:
    """A Jupyter that echoes its token (as a user's notebook output might) and reports
    whether the client asked for compression."""
    size = int(request.query.get("size", "100"))
    filler = b"x" * max(0, size - 40)
    body = b"secret=tok;" + filler + b";again tok;" + request.headers.get("Accept-Encoding", "none").encode()
    return web.Response(body=body, content_type="application/octet-stream")


async def test_small_and_streamed_bodies_are_scrubbed_and_never_compressed(aiohttp_server, aiohttp_client, unused_tcp_port):
    app = web.Application()
    app.router.add_get("/{tail:.*}", leaky)
    upstream = await aiohttp_server(app)
    client, _ = await platform(aiohttp_client, upstream.port, FakeDocker(None), local=True)
    for size in (100, 300_000):  # one answered whole, one streamed in chunks
        r = await client.get(f"/proxy/environments/{ENV}/jupyter/files/x?size={size}", headers={"Accept-Encoding": "gzip"})
        body = await r.read()
        assert r.status == 200 and len(body) == int(r.headers["Content-Length"])
        assert b"tok" not in body
        assert body.startswith(b"secret=***;") and body.endswith(b";again ***;identity")  # never compressed upstream
