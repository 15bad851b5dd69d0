"""JupyterLab through the platform's authenticated reverse proxy, with real clients:
the session cookie (or Bearer) authorises it, others get 404, anonymous 401; a kernel
runs code over the proxied websocket; Jupyter's token never reaches a client; and
Jupyter itself is only published on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from tests.integration.conftest import AccessWorld

class Recorder:
    """Every proxied response's headers and body, to search them for the Jupyter token."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        body = await response.read()
        self.seen.append(json.dumps(list(response.headers.items())))
        self.seen.append(body.decode("utf-8", "replace"))
        return body


def jupyter_token(world: AccessWorld) -> str:
    env = dict(v.split("=", 1) for v in world.container().attrs["Config"]["Env"])
    return env["REMOTEGPU_JUPYTER_TOKEN"]


async def browser(world: AccessWorld, person) -> aiohttp.ClientSession:
    """A browser-like client: logs in and keeps the session cookie."""
    session = aiohttp.ClientSession(world.server.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post("/api/v1/auth/login", json={"username": person.name, "password": person.password}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    session.headers["X-CSRF-Token"] = body["csrf_token"]
    return session


def base(world: AccessWorld) -> str:
    return f"/proxy/environments/{world.env_id}/jupyter/"


async def wait_jupyter(session: aiohttp.ClientSession, world: AccessWorld, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(base(world) + "api/status") as r:
            if r.status == 200:
                return
            assert r.status == 502, await r.text()  # Jupyter still starting
        assert time.monotonic() < deadline, "JupyterLab did not answer through the proxy"
        await asyncio.sleep(0.5)


async def test_owner_reaches_jupyter_status_with_the_session_cookie(access_world):
    rec = Recorder()
    async with await browser(access_world, access_world.alice) as alice:
        await wait_jupyter(alice, access_world)
        async with alice.get(base(access_world) + "api/status") as r:
            assert r.status == 200
            status = json.loads(await rec.read(r))
        assert "started" in status
        async with alice.get(base(access_world) + "lab", headers={"Accept": "text/html"}) as r:
            assert r.status == 200
            assert "JupyterLab" in (await rec.read(r)).decode()
    token = jupyter_token(access_world)
    assert token and all(token not in s for s in rec.seen)


async def test_bearer_token_also_works(access_world):
    async with aiohttp.ClientSession(access_world.server.url) as s:
        await wait_jupyter_bearer(s, access_world)


async def wait_jupyter_bearer(s, world):
    headers = {"Authorization": f"Bearer {world.alice.token}"}
    deadline = time.monotonic() + 60
    while True:
        async with s.get(base(world) + "api/status", headers=headers) as r:
            if r.status == 200:
                return
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)


async def test_another_user_gets_404_and_anonymous_401_or_login_redirect(access_world):
    async with await browser(access_world, access_world.bob) as bob:
        async with bob.get(base(access_world) + "api/status") as r:
            assert r.status == 404
        async with bob.get(base(access_world) + "api/status", headers={"Authorization": f"Bearer {access_world.bob.token}"}) as r:
            assert r.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await bob.ws_connect(base(access_world) + "api/events/subscribe")
        assert refused.value.status == 404
    async with aiohttp.ClientSession(access_world.server.url) as anonymous:
        async with anonymous.get(base(access_world) + "api/status") as r:
            assert r.status == 401
        async with anonymous.get(base(access_world) + "lab", headers={"Accept": "text/html"}, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/login?next=")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect(base(access_world) + "api/events/subscribe")
        assert refused.value.status == 401


async def test_a_kernel_executes_code_over_the_proxied_websocket(access_world):
    rec = Recorder()
    origin = access_world.server.url
    async with await browser(access_world, access_world.alice) as alice:
        await wait_jupyter(alice, access_world)
        # A cross-site page cannot drive the proxy with the cookie.
        async with alice.post(base(access_world) + "api/kernels", json={"name": "python3"}, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
        async with alice.post(base(access_world) + "api/kernels", json={"name": "python3"}) as r:
            assert r.status == 403  # the cookie alone, without an Origin of this site, changes nothing
        async with alice.post(base(access_world) + "api/kernels", json={"name": "python3"}, headers={"Origin": origin}) as r:
            assert r.status == 201, await r.text()
            kernel = json.loads(await rec.read(r))
        try:
            url = base(access_world) + f"api/kernels/{kernel['id']}/channels"
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await alice.ws_connect(url, headers={"Origin": "http://evil.example"})
            async with alice.ws_connect(url, headers={"Origin": origin}) as ws:
                msg_id = uuid.uuid4().hex
                await ws.send_str(json.dumps({
                    "header": {"msg_id": msg_id, "username": "t", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                               "version": "5.3", "date": ""},
                    "parent_header": {}, "metadata": {}, "channel": "shell",
                    "content": {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {},
                                "allow_stdin": False, "stop_on_error": True},
                }))
                result = None
                deadline = time.monotonic() + 60
                while result is None:
                    msg = await ws.receive(timeout=max(1.0, deadline - time.monotonic()))
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    rec.seen.append(msg.data)
                    data = json.loads(msg.data)
                    if data.get("parent_header", {}).get("msg_id") == msg_id and data["msg_type"] == "execute_result":
                        result = data["content"]["data"]["text/plain"]
                assert result == "2"
        finally:
            async with alice.delete(base(access_world) + f"api/kernels/{kernel['id']}", headers={"Origin": origin}) as r:
                assert r.status == 204
    token = jupyter_token(access_world)
    assert all(token not in s for s in rec.seen)


async def test_a_large_file_goes_up_and_comes_back_whole_through_the_proxy(access_world):
    """A 3 MiB upload (Jupyter's contents API, streamed to Jupyter with flow control) and
    its download (streamed back, past the proxy's whole-body limit), byte for byte, the
    token planted in the file masked on the way back."""
    import base64
    import hashlib
    import os

    token = jupyter_token(access_world).encode()
    data = os.urandom(1_500_000) + token + os.urandom(1_500_000)
    origin = access_world.server.url
    async with await browser(access_world, access_world.alice) as alice:
        await wait_jupyter(alice, access_world)
        model = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
        async with alice.put(base(access_world) + "api/contents/big.bin", json=model, headers={"Origin": origin}) as r:
            assert r.status in (200, 201), await r.text()
        async with alice.get(base(access_world) + "files/big.bin") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
            body = await r.read()
    assert token not in body
    expected = data.replace(token, b"*" * len(token))
    assert len(body) == len(expected) and hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()


async def test_platform_cookies_and_authorization_are_not_forwarded(access_world):
    # Jupyter echoes nothing of the request, but its own auth says who called: with our
    # Authorization replaced by its token, the identity endpoint answers for the token.
    async with await browser(access_world, access_world.alice) as alice:
        await wait_jupyter(alice, access_world)
        async with alice.get(base(access_world) + "api/me") as r:
            assert r.status == 200
            assert "identity" in await r.json()


def test_jupyter_is_published_on_loopback_only(access_world):
    bindings = access_world.container().attrs["HostConfig"]["PortBindings"]
    assert bindings["8888/tcp"][0]["HostIp"] == "127.0.0.1"
    assert bindings["22/tcp"][0]["HostIp"] in ("", "0.0.0.0")


async def test_the_container_answers_on_its_own_address_for_the_direct_route(access_world: AccessWorld):
    """What the proxy's direct route to the embedded host's containers relies on: the
    runtime finds the container's IP, and Jupyter answers there on its own port."""
    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

    world = access_world
    runtime = DockerRuntime(world.docker, scope=world.scope)
    route, _ = await runtime.container_routes(world.env_id, 8888)
    assert route is not None and route[1] == 8888 and route[0] != "127.0.0.1"
    url = f"http://{route[0]}:{route[1]}{base(world)}api/status"
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with session.get(url, headers={"Authorization": f"token {jupyter_token(world)}"}) as r:
                    if r.status == 200:
                        assert "started" in await r.json()
                        break
            except aiohttp.ClientConnectorError:
                pass
            assert time.monotonic() < deadline, f"JupyterLab did not answer at {url}"
            await asyncio.sleep(0.5)
    assert (await runtime.container_routes(str(uuid.uuid4()), 8888))[0] is None  # no such environment


async def test_jupyter_also_listens_on_a_unix_socket_the_proxy_can_reach(access_world: AccessWorld):
    """The proxy's fastest way in on its own machine: Jupyter's Unix socket inside the
    container, seen through /proc/<pid>/root. Owner-only, and the token still counts."""
    import os
    import stat

    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
    from remotegpu.domain.environments.models import JUPYTER_CONTAINER_SOCKET
    from remotegpu.entrypoints.http.upstream import ContainedSocket, UpstreamPool

    world = access_world
    runtime = DockerRuntime(world.docker, scope=world.scope)
    _, root = await runtime.container_routes(world.env_id, 8888)
    assert root == f"/proc/{world.container().attrs['State']['Pid']}/root"
    path = root + JUPYTER_CONTAINER_SOCKET
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "Jupyter's Unix socket did not appear"
        await asyncio.sleep(0.5)
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    url = f"http://jupyter{base(world)}api/status"
    pool = UpstreamPool()
    exchange = await pool.request("GET", ContainedSocket(root, JUPYTER_CONTAINER_SOCKET), url[len("http://jupyter"):], {
        "Host": "jupyter", "Authorization": f"token {jupyter_token(world)}",
    })
    assert exchange.status == 200 and "started" in json.loads(await exchange.read())
    await pool.close()
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as stranger:
        async with stranger.get(url) as r:
            assert r.status == 403  # no token, no Jupyter
    assert (await runtime.container_routes(str(uuid.uuid4()), 8888))[1] is None
