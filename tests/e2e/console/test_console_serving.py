"""The platform serves the built console: caching headers and history-mode fallback."""

from __future__ import annotations

import re
import urllib.error
import urllib.request


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_index_assets_and_history_fallback(server):
    status, headers, body = get(server.url + "/")
    assert status == 200
    assert headers["cache-control"] == "no-cache"
    assert b'<div id="app">' in body
    asset = re.search(rb'src="(/assets/[^"]+\.js)"', body).group(1).decode()

    status, headers, _ = get(server.url + asset)
    assert status == 200
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in headers["content-type"]

    for path in ("/environments/123", "/admin/users", "/account?tab=keys"):
        status, headers, page = get(server.url + path)
        assert status == 200 and page == body and headers["cache-control"] == "no-cache", path

    status, headers, _ = get(server.url + "/favicon.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg")


def test_api_and_ops_paths_are_not_swallowed(server):
    for path in ("/api/v1/no-such-thing", "/api/nope"):
        status, headers, body = get(server.url + path)
        # 404 here: never the console's index.html.
        assert 400 <= status < 500, path
        assert headers["content-type"].startswith("application/json"), path
        assert b'"error"' in body
    assert get(server.url + "/assets/does-not-exist.js")[0] == 404
    assert get(server.url + "/assets/..%2f..%2findex.html")[0] == 404
    status, _, body = get(server.url + "/healthz")
    assert status == 200 and b"ok" in body


def test_a_server_without_a_built_console_says_how_to_build_it(tmp_path):
    # Sync test on its own loop in a thread: the session's sync Playwright owns this thread's loop.
    import asyncio
    import threading

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from remotegpu.entrypoints.http import console

    async def check() -> None:
        app = web.Application()
        console.install(app, tmp_path / "missing-dist")
        async with TestClient(TestServer(app)) as client:
            for path in ("/", "/environments"):
                resp = await client.get(path)
                assert resp.status == 200
                assert "npm run build" in await resp.text()
            assert (await client.get("/api/v1/x")).status == 404

    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(check())
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if failures:
        raise failures[0]
