"""Clients that reach environment app hosts (``{env}--{app}.localhost``) like a browser.

Every ``*.localhost`` name resolves to 127.0.0.1 here (Chromium does the same by itself),
so tests use the real app URLs, and aiohttp's cookie jar keeps cookies per host as a
browser would: the console's on 127.0.0.1, each app's on its own host.
"""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver


class LoopbackResolver(AbstractResolver):
    """``*.localhost`` (and anything else) → 127.0.0.1."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


def browser_session(**kw) -> aiohttp.ClientSession:
    """A cookie-keeping client whose ``*.localhost`` names are loopback."""
    kw.setdefault("cookie_jar", aiohttp.CookieJar(unsafe=True))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver(), force_close=False), **kw)


def app_origin(env_id: str, port: int, app: str = "jupyter") -> str:
    return f"http://{env_id}--{app}.localhost:{port}"


async def console_login(session: aiohttp.ClientSession, console: str, username: str, password: str) -> dict:
    """Log in as the console does (cookies; the CSRF token is answered, kept by the caller)."""
    async with session.post(f"{console}/api/v1/auth/session", json={"username": username, "password": password},
                            headers={"Origin": console}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def handshake(session: aiohttp.ClientSession, console: str, env_id: str, port: int, next_path: str = "/api/status",
                    app: str = "jupyter") -> str:
    """Open the app as a browser does, one redirect at a time; returns the ticket it spent.
    The app cookie ends up in ``session``'s jar, for the app's host only."""
    origin = app_origin(env_id, port, app)
    async with session.get(f"{origin}{next_path}", headers={"Accept": "text/html"}, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        authorize = r.headers["Location"]
    parts = urlsplit(authorize)
    assert parts.path == f"/api/v1/environments/{env_id}/apps/{app}/authorize", authorize
    async with session.get(f"{console}{parts.path}?{parts.query}", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        callback = r.headers["Location"]
    assert callback.startswith(f"{origin}/_remotegpu/callback?"), callback
    async with session.get(callback, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        assert r.headers["Location"] == next_path
    return parse_qs(urlsplit(callback).query)["ticket"][0]


async def signed_in_app(console: str, username: str, password: str, env_id: str) -> tuple[aiohttp.ClientSession, str]:
    """A browser-like client logged in to the console and through the app handshake;
    returns it and the app's origin (its cookie jar holds the app cookie for that host)."""
    session = browser_session()
    try:
        await console_login(session, console, username, password)
        await handshake(session, console, env_id, int(console.rsplit(":", 1)[1]))
    except BaseException:
        await session.close()
        raise
    return session, app_origin(env_id, int(console.rsplit(":", 1)[1]))
