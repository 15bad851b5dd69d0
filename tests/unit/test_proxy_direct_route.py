"""The Jupyter proxy's direct route to the embedded host's containers: used when the
local Docker runtime knows the container's address, skipped for other hosts, abandoned
for the published port when that address cannot be reached; a request that finds
JupyterLab not listening yet waits for it (long just after the environment started,
briefly later), then 502 (looked up again next time). Websockets go through the
container's Unix socket too, and close once what admitted them no longer holds."""

from __future__ import annotations

import asyncio
import errno
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from aiohttp import web

from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.fleet.models import Host
from remotegpu.entrypoints.http import local_host, proxy as proxy_module
from remotegpu.entrypoints.http.keys import CONTAINER
from remotegpu.entrypoints.http.proxy import JupyterProxy
from remotegpu.entrypoints.http.upstream import UpstreamError

ENV = "0b6c3d52-5f8e-4f49-9a57-2a4c1f1f0a11"


class FakeDocker:
    """The local DockerRuntime's lookups; the fake container listens on ``route`` (its
    IP and port) and, if ``root`` is given, on Jupyter's socket below it."""

    def __init__(self, route, root=None):
        self.route, self.root, self.asked = route, root, []

    async def container_routes(self, env_id, container_port):
        self.asked.extend([(env_id, container_port), (env_id, "root")])
        return self.route, self.root


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


async def start_jupyter_on_socket(path: str) -> web.AppRunner:
    app = web.Application()
    app[NAME] = "socket"
    app.router.add_get("/{tail:.*}", jupyter)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


async def platform(aiohttp_client, published_port: int, docker: FakeDocker, *, local: bool, still_admitted=None,
                   started_at: datetime | None = None):
    """The proxy alone, as ``apps.py`` calls it for an app host whose request it admitted
    (authorisation is tested in tests/e2e/test_session.py and tests/integration)."""
    app = web.Application()
    app[CONTAINER] = SimpleNamespace(environment_entry=lambda: NoActivity(), settings=lambda: SimpleNamespace(live_recheck_seconds=0.2))
    proxy = JupyterProxy(app)
    app.cleanup_ctx.append(proxy.ctx)
    host = Host(id="h-local", name="box", private_address="127.0.0.1")
    upstream = Upstream(env_id=ENV, host=host, port=published_port, jupyter_token="tok", started_at=started_at)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await proxy.serve(request, upstream, still_admitted=still_admitted)

    app.router.add_route("*", "/{tail:.*}", handle)
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
        r = await client.get(f"/api/status")
        assert r.status == 200
        assert (await r.json()) == {"served_by": "container", "path": f"/api/status"}
    assert docker.asked == [(ENV, 8888), (ENV, "root")]  # looked up once, then cached


async def test_plain_http_prefers_the_containers_unix_socket_and_falls_back_to_its_ip(aiohttp_server, aiohttp_client, tmp_path):
    published = await start_jupyter(aiohttp_server, "published")
    direct = await start_jupyter(aiohttp_server, "container")
    (tmp_path / "run" / "remotegpu").mkdir(parents=True)
    runner = await start_jupyter_on_socket(str(tmp_path / "run" / "remotegpu" / "jupyter.sock"))
    docker = FakeDocker((direct.host, direct.port), root=str(tmp_path))
    client, proxy = await platform(aiohttp_client, published.port, docker, local=True)
    r = await client.get(f"/api/status")
    assert (await r.json())["served_by"] == "socket"
    await runner.cleanup()  # Jupyter restarting: the socket is gone
    r = await client.get(f"/api/status")
    assert r.status == 200 and (await r.json())["served_by"] == "container"
    assert ENV not in proxy._direct  # forgotten: the next request looks again


async def test_other_hosts_use_the_published_port(aiohttp_server, aiohttp_client, unused_tcp_port):
    published = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("127.0.0.1", unused_tcp_port))
    client, _ = await platform(aiohttp_client, published.port, docker, local=False)
    r = await client.get(f"/api/status")
    assert (await r.json())["served_by"] == "published"
    assert docker.asked == []


async def test_an_unreachable_direct_route_falls_back_to_the_published_port(aiohttp_server, aiohttp_client, monkeypatch):
    published = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("10.255.0.9", 8888))  # a container recreated elsewhere meanwhile
    client, proxy = await platform(aiohttp_client, published.port, docker, local=True)
    connect = proxy._upstream._connect

    async def no_route(key):
        if key[0] == "10.255.0.9":
            raise UpstreamError("cannot connect: no route to host", refused=True, errno=errno.EHOSTUNREACH)
        return await connect(key)

    monkeypatch.setattr(proxy._upstream, "_connect", no_route)
    r = await client.get(f"/api/status")
    assert r.status == 200 and (await r.json())["served_by"] == "published"
    assert ENV not in proxy._direct  # forgotten: the next request looks again


async def test_a_refused_direct_route_is_502_and_looked_up_again(aiohttp_server, aiohttp_client, unused_tcp_port, monkeypatch):
    """Refused: the container is there but Jupyter is not listening (an environment that
    started long ago: it waits ``RESTART_WAIT_SECONDS`` only). Its published port leads
    to the same Jupyter through Docker's port proxy, which would hold the connection
    open while it retries (a request hung there for minutes): not tried."""
    monkeypatch.setattr(proxy_module, "RESTART_WAIT_SECONDS", 0.3)
    published = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("127.0.0.1", unused_tcp_port))  # nothing listens there
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    client, proxy = await platform(aiohttp_client, published.port, docker, local=True, started_at=long_ago)
    t0 = time.monotonic()
    r = await client.get(f"/api/status")
    assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_unavailable"
    assert 0.3 <= time.monotonic() - t0 < 2.5  # waited for a restarting JupyterLab, briefly
    assert ENV not in proxy._direct
    r = await client.get(f"/lab", headers={"Accept": "text/html"})  # a tab opened too early reloads itself
    assert r.status == 502 and r.headers["Retry-After"] == "2" and 'http-equiv="refresh"' in await r.text()
    direct = await start_jupyter(aiohttp_server, "container")  # Jupyter came up
    docker.route = (direct.host, direct.port)
    r = await client.get(f"/api/status")
    assert r.status == 200 and (await r.json())["served_by"] == "container"


async def test_a_request_before_jupyter_listens_waits_for_it(aiohttp_server, aiohttp_client, tmp_path, unused_tcp_port):
    """Just started: the socket is not there yet and the container's port refuses. The
    request is not failed (nor sent to the published port): it waits, and is answered
    by JupyterLab as soon as it listens; the direct route is looked up again meanwhile."""
    published = await start_jupyter(aiohttp_server, "published")
    (tmp_path / "run" / "remotegpu").mkdir(parents=True)
    docker = FakeDocker(("127.0.0.1", unused_tcp_port), root=str(tmp_path))
    client, _ = await platform(aiohttp_client, published.port, docker, local=True, started_at=datetime.now(timezone.utc))
    runners = []

    async def jupyter_comes_up() -> None:
        await asyncio.sleep(1.5)
        runners.append(await start_jupyter_on_socket(str(tmp_path / "run" / "remotegpu" / "jupyter.sock")))

    coming = asyncio.ensure_future(jupyter_comes_up())
    try:
        t0 = time.monotonic()
        r = await client.get("/api/status")
        waited = time.monotonic() - t0
        assert r.status == 200 and (await r.json())["served_by"] == "socket"
        assert 1.4 <= waited < 1.5 + 1.0, waited  # answered once it listened, not at a poll's or a page reload's pace
        assert len(docker.asked) >= 4  # looked up at first and again while waiting (≥ 1 s)
    finally:
        await coming
        for runner in runners:
            await runner.cleanup()


async def leaky(request: web.Request) -> web.StreamResponse:
    """A Jupyter that echoes its token (as a user's notebook output might) and reports
    whether the client asked for compression; ``chunked`` sends it in pieces without a
    length, the token split across two of them."""
    size = int(request.query.get("size", "100"))
    filler = b"x" * max(0, size - 40)
    body = b"secret=tok;" + filler + b";again tok;" + request.headers.get("Accept-Encoding", "none").encode()
    if "chunked" not in request.query:
        return web.Response(body=body, content_type="application/octet-stream")
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    middle = len(body) // 2
    for piece in (body[:middle], b"t", b"ok", body[middle:]):
        await response.write(piece)
        await asyncio.sleep(0.01)
    await response.write_eof()
    return response


async def test_small_and_streamed_bodies_are_scrubbed_and_never_compressed(aiohttp_server, aiohttp_client, unused_tcp_port):
    app = web.Application()
    app.router.add_get("/{tail:.*}", leaky)
    upstream = await aiohttp_server(app)
    client, _ = await platform(aiohttp_client, upstream.port, FakeDocker(None), local=True)
    for size in (100, 300_000):  # one answered whole, one streamed in chunks
        r = await client.get(f"/files/x?size={size}", headers={"Accept-Encoding": "gzip"})
        body = await r.read()
        assert r.status == 200 and len(body) == int(r.headers["Content-Length"])
        assert b"tok" not in body
        assert body.startswith(b"secret=***;") and body.endswith(b";again ***;identity")  # never compressed upstream
    r = await client.get(f"/files/x?size=300000&chunked=1")
    body = await r.read()
    assert r.status == 200 and "Content-Length" not in r.headers
    assert len(body) == len(b"secret=tok;") + (300_000 - 40) + len(b";again tok;identity") + len(b"tok")
    assert b"tok" not in body and body.count(b"***") == 3


async def test_head_and_not_modified_answers_carry_no_body(aiohttp_server, aiohttp_client):
    async def asset(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=b"a" * 200_000, headers={"ETag": '"v1"'}, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/{tail:.*}", asset)  # HEAD too
    upstream = await aiohttp_server(app)
    client, _ = await platform(aiohttp_client, upstream.port, FakeDocker(None), local=True)
    url = f"/static/app.js"
    r = await client.head(url)
    assert r.status == 200 and r.headers["Content-Length"] == "200000" and await r.read() == b""
    r = await client.get(url, headers={"If-None-Match": '"v1"'})
    assert r.status == 304 and r.headers["ETag"] == '"v1"' and await r.read() == b""
    r = await client.get(url)  # the same connections still in step
    assert r.status == 200 and len(await r.read()) == 200_000


async def echo_ws(request: web.Request) -> web.StreamResponse:
    assert request.headers["Authorization"] == "token tok"
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(f"{request.app[NAME]}:{msg.data}")
    return ws


async def start_ws_jupyter_on_socket(path: str) -> web.AppRunner:
    app = web.Application()
    app[NAME] = "socket"
    app.router.add_get("/api/kernels/k/channels", echo_ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


async def test_websockets_go_through_the_containers_unix_socket(aiohttp_server, aiohttp_client, tmp_path, unused_tcp_port):
    """The token travels on no network: with Jupyter's socket there, neither the
    container's IP (nothing listens: it would be refused) nor the published port is used."""
    published = web.Application()
    published[NAME] = "published"
    published.router.add_get("/api/kernels/k/channels", echo_ws)
    published_server = await aiohttp_server(published)
    (tmp_path / "run" / "remotegpu").mkdir(parents=True)
    runner = await start_ws_jupyter_on_socket(str(tmp_path / "run" / "remotegpu" / "jupyter.sock"))
    docker = FakeDocker(("127.0.0.1", unused_tcp_port), root=str(tmp_path))
    client, _ = await platform(aiohttp_client, published_server.port, docker, local=True)
    async with client.ws_connect("/api/kernels/k/channels") as ws:
        await ws.send_str("hi tok")
        assert (await ws.receive(timeout=10)).data == "socket:hi ***"
    await runner.cleanup()
    # No socket (an older image): the container's IP refuses, so 502 as for HTTP.
    import aiohttp

    try:
        await client.ws_connect("/api/kernels/k/channels")
        raise AssertionError("expected a refused handshake")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 502


async def test_a_websocket_before_jupyter_listens_waits_for_it(aiohttp_server, aiohttp_client, tmp_path, unused_tcp_port):
    """As for HTTP: just started, no socket yet and the container's port refuses. The
    handshake is held (not refused with 502) and the kernel channel opens as soon as
    JupyterLab listens; one that never listens is refused once the wait is over."""
    published = web.Application()
    published[NAME] = "published"
    published.router.add_get("/api/kernels/k/channels", echo_ws)
    published_server = await aiohttp_server(published)
    (tmp_path / "run" / "remotegpu").mkdir(parents=True)
    docker = FakeDocker(("127.0.0.1", unused_tcp_port), root=str(tmp_path))
    client, _ = await platform(aiohttp_client, published_server.port, docker, local=True, started_at=datetime.now(timezone.utc))
    runners = []

    async def jupyter_comes_up() -> None:
        await asyncio.sleep(1.5)
        runners.append(await start_ws_jupyter_on_socket(str(tmp_path / "run" / "remotegpu" / "jupyter.sock")))

    coming = asyncio.ensure_future(jupyter_comes_up())
    try:
        t0 = time.monotonic()
        async with client.ws_connect("/api/kernels/k/channels") as ws:
            waited = time.monotonic() - t0
            await ws.send_str("hi tok")
            assert (await ws.receive(timeout=10)).data == "socket:hi ***"  # Jupyter's socket, not the published port
        assert 1.4 <= waited < 1.5 + 1.0, waited
        assert len(docker.asked) >= 4  # looked up again while waiting
    finally:
        await coming
        for runner in runners:
            await runner.cleanup()


async def test_a_websocket_to_a_jupyter_that_never_listens_is_refused_after_the_wait(
    aiohttp_server, aiohttp_client, tmp_path, unused_tcp_port, monkeypatch
):
    import aiohttp

    monkeypatch.setattr(proxy_module, "RESTART_WAIT_SECONDS", 0.3)
    published_server = await start_jupyter(aiohttp_server, "published")
    docker = FakeDocker(("127.0.0.1", unused_tcp_port), root=str(tmp_path))  # no socket, the port refuses
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    client, _ = await platform(aiohttp_client, published_server.port, docker, local=True, started_at=long_ago)
    t0 = time.monotonic()
    try:
        await client.ws_connect("/api/kernels/k/channels")
        raise AssertionError("expected a refused handshake")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 502
    assert 0.3 <= time.monotonic() - t0 < 2.5


async def test_a_websocket_closes_once_its_admission_no_longer_holds(aiohttp_server, aiohttp_client, tmp_path):
    (tmp_path / "run" / "remotegpu").mkdir(parents=True)
    runner = await start_ws_jupyter_on_socket(str(tmp_path / "run" / "remotegpu" / "jupyter.sock"))
    allowed = True

    async def still_admitted() -> bool:
        return allowed

    client, _ = await platform(aiohttp_client, 1, FakeDocker(None, root=str(tmp_path)), local=True, still_admitted=still_admitted)
    try:
        async with client.ws_connect("/api/kernels/k/channels") as ws:
            await ws.send_str("one")
            assert (await ws.receive(timeout=10)).data == "socket:one"
            await asyncio.sleep(0.5)  # several re-checks pass
            await ws.send_str("two")
            assert (await ws.receive(timeout=10)).data == "socket:two"
            allowed = False
            msg = await ws.receive(timeout=10)
            assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING"), msg
            assert ws.close_code == 1008
    finally:
        await runner.cleanup()
