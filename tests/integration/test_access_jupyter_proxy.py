"""JupyterLab on its own origin (``{env}--jupyter.localhost``), with real clients and a
real container: the handshake (console session → one-time ticket → host-bound app
cookie) lets the owner in, others get 404, anonymous a redirect or 401; the app cookie
is useless on the console's API and on another environment's host; a ticket is spent
once and lives seconds; a kernel runs code over the proxied websocket, which closes
within seconds when its user is disabled or removed from the workspace (so do the
terminal and the event stream); Jupyter's token never reaches a client; Jupyter itself
is only published on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import pytest

from remotegpu.application.environments.app_access import TICKET, AppAddress, AppCredentials
from tests.integration.conftest import AccessWorld, wait_running
from tests.support.app_hosts import app_origin, browser_session, console_login, handshake
from tests.support.workspaces import join_workspace_live

SECRET = "live-server-secret-key-0123456789abcdef"  # tests/support/live_server.py
PASSWORD = "correct horse battery"


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


def port(world: AccessWorld) -> int:
    return int(world.server.url.rsplit(":", 1)[1])


class Browser:
    """A browser-like client signed in to the console and, after ``open``, to an app."""

    def __init__(self, world: AccessWorld, username: str, password: str = PASSWORD) -> None:
        self.world, self.username, self.password = world, username, password
        self.session = browser_session()
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        self.csrf = (await console_login(self.session, self.world.server.url, self.username, self.password))["csrf_token"]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def open(self, env_id: str) -> str:
        """The handshake; returns the app's origin."""
        await handshake(self.session, self.world.server.url, env_id, port(self.world))
        return app_origin(env_id, port(self.world))

    def app_cookie(self, env_id: str) -> str:
        host = f"{env_id}--jupyter.localhost"
        found = [c.value for c in self.session.cookie_jar if c.key == "rgpu_app" and c["domain"] in ("", host)]
        assert found, list(self.session.cookie_jar)
        return found[0]


async def wait_jupyter(session: aiohttp.ClientSession, app: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{app}/api/status") as r:
            if r.status == 200:
                return
            assert r.status == 502, await r.text()  # Jupyter still starting
        assert time.monotonic() < deadline, "JupyterLab did not answer through the proxy"
        await asyncio.sleep(0.5)


async def test_the_owner_gets_in_through_the_handshake(access_world):
    rec = Recorder()
    async with Browser(access_world, "alice") as alice:
        app = await alice.open(access_world.env_id)
        await wait_jupyter(alice.session, app)
        async with alice.session.get(f"{app}/api/status") as r:
            assert r.status == 200
            assert "started" in json.loads(await rec.read(r))
        async with alice.session.get(f"{app}/lab", headers={"Accept": "text/html"}) as r:
            assert r.status == 200
            assert "JupyterLab" in (await rec.read(r)).decode()
        # The app cookie: host-only, httpOnly, on the app's host alone.
        for cookie in alice.session.cookie_jar:
            if cookie.key == "rgpu_app":
                assert cookie["httponly"] and cookie["domain"] in ("", f"{access_world.env_id}--jupyter.localhost")
    token = jupyter_token(access_world)
    assert token and all(token not in s for s in rec.seen)


async def test_another_user_gets_404_and_anonymous_a_redirect_or_401(access_world):
    async with Browser(access_world, "bob") as bob:
        authorize = f"/api/v1/environments/{access_world.env_id}/apps/jupyter/authorize"
        async with bob.session.get(f"{access_world.server.url}{authorize}", allow_redirects=False) as r:
            assert r.status == 404
    app = app_origin(access_world.env_id, port(access_world))
    async with browser_session() as anonymous:
        async with anonymous.get(f"{app}/api/status") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "app_login_required"
        async with anonymous.get(f"{app}/lab", headers={"Accept": "text/html"}, allow_redirects=False) as r:
            assert r.status == 302
            assert urlsplit(r.headers["Location"]).path == f"/api/v1/environments/{access_world.env_id}/apps/jupyter/authorize"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect(f"{app}/api/events/subscribe")
        assert refused.value.status == 401
        # Bearer tokens mean nothing on an app host.
        async with anonymous.get(f"{app}/api/status", headers={"Authorization": f"Bearer {access_world.alice.token}"}) as r:
            assert r.status == 401


async def test_the_app_cookie_is_useless_on_the_api_and_on_another_environments_host(access_world):
    async with Browser(access_world, "alice") as alice:
        await alice.open(access_world.env_id)
        cookie = alice.app_cookie(access_world.env_id)
    async with aiohttp.ClientSession() as s:
        for path in ("/api/v1/users/me", "/api/v1/auth/session", "/api/v1/users/me/tokens"):
            async with s.get(f"{access_world.server.url}{path}", headers={"Cookie": f"rgpu_app={cookie}"}) as r:
                assert r.status == 401, path
        async with s.post(f"{access_world.server.url}/api/v1/users/me/tokens", json={"name": "x"},
                          headers={"Cookie": f"rgpu_app={cookie}", "Origin": access_world.server.url}) as r:
            assert r.status == 401
    async with browser_session(cookie_jar=aiohttp.DummyCookieJar()) as s:
        other = app_origin(str(uuid.uuid4()), port(access_world))
        async with s.get(f"{other}/api/status", headers={"Cookie": f"rgpu_app={cookie}"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "app_login_required"
        mine = app_origin(access_world.env_id, port(access_world))
        async with s.get(f"{mine}/api/status", headers={"Cookie": f"rgpu_app={cookie}"}) as r:
            assert r.status in (200, 502)  # the same cookie on its own host: in


async def test_a_ticket_is_spent_once_and_lives_seconds(access_world):
    async with Browser(access_world, "alice") as alice:
        authorize = f"{access_world.server.url}/api/v1/environments/{access_world.env_id}/apps/jupyter/authorize?next=/api/status"
        async with alice.session.get(authorize, allow_redirects=False) as r:
            assert r.status == 302
            callback = r.headers["Location"]
    async with browser_session() as first, browser_session() as replay:
        async with first.get(callback, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/api/status"
        async with replay.get(callback, allow_redirects=False) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "ticket_used"
            assert not r.headers.getall("Set-Cookie", [])
    # A genuine ticket, minted 31 s ago: expired.
    creds = AppCredentials(SECRET)
    address = AppAddress(access_world.env_id, "jupyter")
    host = address.host("localhost")
    code, me = access_world.server.request("GET", "/api/v1/users/me", token=access_world.alice.token)
    stale, _ = creds.issue(TICKET, me["id"], address, host, int(time.time()) - 31)
    async with browser_session() as s:
        async with s.get(f"{app_origin(access_world.env_id, port(access_world))}/_remotegpu/callback?ticket={stale}",
                         allow_redirects=False) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_ticket"
        # A ticket for this environment, presented on another environment's host: refused.
        fresh, _ = creds.issue(TICKET, me["id"], address, host, int(time.time()))
        async with s.get(f"{app_origin(str(uuid.uuid4()), port(access_world))}/_remotegpu/callback?ticket={fresh}",
                         allow_redirects=False) as r:
            assert r.status == 401


async def run_code(ws: aiohttp.ClientWebSocketResponse, code: str, rec: Recorder | None = None, timeout: float = 60) -> str:
    msg_id = uuid.uuid4().hex
    await ws.send_str(json.dumps({
        "header": {"msg_id": msg_id, "username": "t", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(1.0, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if rec is not None:
            rec.seen.append(msg.data)
        data = json.loads(msg.data)
        if data.get("parent_header", {}).get("msg_id") == msg_id and data["msg_type"] == "execute_result":
            return data["content"]["data"]["text/plain"]


async def start_kernel(session: aiohttp.ClientSession, app: str) -> str:
    async with session.post(f"{app}/api/kernels", json={"name": "python3"}, headers={"Origin": app}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"]


async def test_a_kernel_executes_code_over_the_proxied_websocket(access_world):
    rec = Recorder()
    async with Browser(access_world, "alice") as alice:
        app = await alice.open(access_world.env_id)
        await wait_jupyter(alice.session, app)
        kernel = await start_kernel(alice.session, app)
        try:
            url = f"{app}/api/kernels/{kernel}/channels"
            # Another origin (another environment's app host, same-site with this one) is
            # refused by the platform: Jupyter's own check lets token-authenticated requests by.
            for evil in ("http://evil.example", app_origin(str(uuid.uuid4()), port(access_world)), "null"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await alice.session.ws_connect(url, headers={"Origin": evil})
                assert refused.value.status == 403
                async with alice.session.post(f"{app}/api/kernels", json={"name": "python3"}, headers={"Origin": evil}) as r:
                    assert r.status == 403
            async with alice.session.post(f"{app}/api/kernels", json={"name": "python3"},
                                          headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}) as r:
                assert r.status == 403
            async with alice.session.ws_connect(url, headers={"Origin": app}) as ws:
                assert await run_code(ws, "1+1", rec) == "2"
        finally:
            async with alice.session.delete(f"{app}/api/kernels/{kernel}", headers={"Origin": app}) as r:
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
    async with Browser(access_world, "alice") as alice:
        app = await alice.open(access_world.env_id)
        await wait_jupyter(alice.session, app)
        model = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
        async with alice.session.put(f"{app}/api/contents/big.bin", json=model, headers={"Origin": app}) as r:
            assert r.status in (200, 201), await r.text()
        async with alice.session.get(f"{app}/files/big.bin") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
            body = await r.read()
    assert token not in body
    expected = data.replace(token, b"*" * len(token))
    assert len(body) == len(expected) and hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()


async def test_platform_cookies_and_authorization_are_not_forwarded(access_world):
    """Jupyter echoes nothing of the request, but its own auth says who called: with our
    Authorization replaced by its token, the identity endpoint answers for the token."""
    async with Browser(access_world, "alice") as alice:
        app = await alice.open(access_world.env_id)
        await wait_jupyter(alice.session, app)
        async with alice.session.get(f"{app}/api/me") as r:
            assert r.status == 200
            assert "identity" in await r.json()


def test_jupyter_is_published_on_loopback_only(access_world):
    bindings = access_world.container().attrs["HostConfig"]["PortBindings"]
    assert bindings["8888/tcp"][0]["HostIp"] == "127.0.0.1"
    assert bindings["22/tcp"][0]["HostIp"] in ("", "0.0.0.0")


async def test_the_container_answers_on_its_own_address_for_the_direct_route(access_world: AccessWorld):
    """What the proxy's fallback route to the embedded host's containers relies on: the
    runtime finds the container's IP, and Jupyter answers there on its own port."""
    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

    world = access_world
    runtime = DockerRuntime(world.docker, scope=world.scope)
    route, _ = await runtime.container_routes(world.env_id, 8888)
    assert route is not None and route[1] == 8888 and route[0] != "127.0.0.1"
    url = f"http://{route[0]}:{route[1]}/api/status"
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
    """The proxy's way in on its own machine, for HTTP and websockets: Jupyter's Unix
    socket inside the container, seen through /proc/<pid>/root. Owner-only, and the
    token still counts."""
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
    pool = UpstreamPool()
    exchange = await pool.request("GET", ContainedSocket(root, JUPYTER_CONTAINER_SOCKET), "/api/status", {
        "Host": "jupyter", "Authorization": f"token {jupyter_token(world)}",
    })
    assert exchange.status == 200 and "started" in json.loads(await exchange.read())
    await pool.close()
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as stranger:
        async with stranger.get("http://jupyter/api/status") as r:
            assert r.status == 403  # no token, no Jupyter
    assert (await runtime.container_routes(str(uuid.uuid4()), 8888))[1] is None


# --- revocation reaches live connections ------------------------------------------------


@pytest.fixture(scope="module")
def shared_env(access_world):
    """A shared environment in a team workspace of alice's, with carol, dave and erin as members."""
    server = access_world.server
    admin = server.login("admin", "admin-password-123")
    suffix = uuid.uuid4().hex[:6]
    people = {}
    for name in ("carol", "dave", "erin"):
        username = f"{name}{suffix}"
        token = server.signup(username, PASSWORD)
        code, me = server.request("GET", "/api/v1/users/me", token=token)
        people[name] = (username, token, me["id"])
    code, ws = server.request("POST", "/api/v1/workspaces", {"name": f"team-{suffix}"}, token=access_world.alice.token)
    assert code == 201, ws
    for username, token, _ in people.values():
        join_workspace_live(server, access_world.alice.token, ws["id"], username, token)
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": f"shared-{suffix}", "workspace_id": ws["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1, "shared": True},
        token=access_world.alice.token,
    )
    assert code == 202, env
    wait_running(server, access_world.alice.token, env["id"])
    yield {"env_id": env["id"], "workspace_id": ws["id"], "admin": admin, **people}
    server.request("DELETE", f"/api/v1/environments/{env['id']}", token=access_world.alice.token)
    deadline = time.monotonic() + 90  # gone before the session's clean-up sweeps the scope (else both remove it)
    while access_world.docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env['id']}"}):
        assert time.monotonic() < deadline, "the shared environment's container was not removed"
        time.sleep(0.5)


async def closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> int | None:
    """Reads (and drops) frames until the socket closes; its close code. Fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code


async def test_a_removed_member_loses_the_open_kernel_websocket_and_the_app(access_world, shared_env):
    username, _, user_id = shared_env["carol"]
    async with Browser(access_world, username) as carol:
        app = await carol.open(shared_env["env_id"])
        await wait_jupyter(carol.session, app)
        kernel = await start_kernel(carol.session, app)
        async with carol.session.ws_connect(f"{app}/api/kernels/{kernel}/channels", headers={"Origin": app}) as ws:
            assert await run_code(ws, "6*7") == "42"
            code, body = access_world.server.request(
                "DELETE", f"/api/v1/workspaces/{shared_env['workspace_id']}/members/{user_id}", token=access_world.alice.token)
            assert code == 204, body
            removed_at = time.monotonic()
            assert await closed_within(ws, 15) == 1008
            log_closed_after = time.monotonic() - removed_at
        async with carol.session.get(f"{app}/api/status") as r:
            assert r.status == 404  # the app cookie no longer admits
    assert log_closed_after < 15


async def test_a_disabled_user_loses_the_kernel_websocket_the_terminal_and_the_event_stream(access_world, shared_env):
    username, token, user_id = shared_env["dave"]
    env_id = shared_env["env_id"]
    async with Browser(access_world, username) as dave:
        app = await dave.open(env_id)
        await wait_jupyter(dave.session, app)
        kernel = await start_kernel(dave.session, app)
        kernel_ws = await dave.session.ws_connect(f"{app}/api/kernels/{kernel}/channels", headers={"Origin": app})
        assert await run_code(kernel_ws, "2+3") == "5"
        console = access_world.server.url
        deadline = time.monotonic() + 60
        while True:  # sshd/docker exec may need a moment after the container runs (409 meanwhile)
            try:
                terminal = await dave.session.ws_connect(f"{console}/api/v1/environments/{env_id}/terminal", headers={"Origin": console})
                break
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 409 and time.monotonic() < deadline
                await asyncio.sleep(0.5)
        stream = await dave.session.get(f"{console}/api/v1/events/stream")
        assert stream.status == 200
        code, body = access_world.server.request("PATCH", f"/api/v1/users/{user_id}", {"is_active": False}, token=shared_env["admin"])
        assert code == 200, body
        assert await closed_within(kernel_ws, 15) == 1008
        assert await closed_within(terminal, 15) == 1008

        async def stream_ends() -> None:
            while await stream.content.readline():
                pass

        await asyncio.wait_for(stream_ends(), 15)
        stream.close()
        await kernel_ws.close()
        await terminal.close()


async def test_a_password_change_ends_the_app_session_and_its_websocket(access_world, shared_env):
    username, token, _ = shared_env["erin"]
    async with Browser(access_world, username) as erin:
        app = await erin.open(shared_env["env_id"])
        await wait_jupyter(erin.session, app)
        kernel = await start_kernel(erin.session, app)
        async with erin.session.ws_connect(f"{app}/api/kernels/{kernel}/channels", headers={"Origin": app}) as ws:
            assert await run_code(ws, "3*3") == "9"
            code, body = access_world.server.request(
                "POST", "/api/v1/users/me/password", {"current_password": PASSWORD, "new_password": "a brand new password"}, token=token)
            assert code in (200, 204), body
            assert await closed_within(ws, 15) == 1008
        async with erin.session.get(f"{app}/api/status") as r:
            assert r.status == 404  # the app cookie from before the change admits no more
