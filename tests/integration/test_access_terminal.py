"""The web terminal: a websocket bridged to a shell with a pty in the container."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
import pytest

from tests.integration.conftest import AccessWorld


def path(world: AccessWorld) -> str:
    return f"/api/v1/environments/{world.env_id}/terminal"


async def read_until(ws, needle: str, timeout: float = 20) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg, seen)
        seen += msg.data
    return seen


async def test_echo_through_the_terminal_with_the_session_cookie(access_world):
    marker = f"hello-{random.randrange(10**9)}"
    async with aiohttp.ClientSession(access_world.server.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post("/api/v1/auth/login", json={"username": "alice", "password": access_world.alice.password}) as r:
            assert r.status == 200
        async with browser.ws_connect(path(access_world), headers={"Origin": access_world.server.url}) as ws:
            await ws.send_str(json.dumps({"type": "resize", "cols": 132, "rows": 40}))
            await ws.send_str(f"echo {marker}; stty size\r")
            seen = await read_until(ws, "40 132")
            assert seen.count(marker) >= 2  # the echoed command line and its output
            await ws.send_bytes(b"echo $((6*7))-done\r")
            assert "42-done" in await read_until(ws, "42-done")


async def test_bearer_terminal_closes_when_the_shell_exits(access_world):
    headers = {"Authorization": f"Bearer {access_world.alice.token}"}
    async with aiohttp.ClientSession(access_world.server.url) as s:
        async with s.ws_connect(path(access_world), headers=headers) as ws:
            await ws.send_str("exit\r")
            deadline = time.monotonic() + 15
            while True:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            assert ws.close_code == 1000


async def test_a_non_member_cannot_open_it_nor_anonymous_nor_another_site(access_world):
    async with aiohttp.ClientSession(access_world.server.url) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(path(access_world), headers={"Authorization": f"Bearer {access_world.bob.token}"})
        assert refused.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(path(access_world))
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(path(access_world), headers={"Authorization": f"Bearer {access_world.alice.token}",
                                                            "Origin": "http://evil.example"})
        assert refused.value.status == 403
