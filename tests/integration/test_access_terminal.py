"""The web terminal: a websocket bridged to a shell with a pty in the container."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
import pytest

from tests.integration.conftest import AccessWorld, wait_running


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
        async with browser.post("/api/v1/auth/session", json={"username": "alice", "password": access_world.alice.password},
                                headers={"Origin": access_world.server.url}) as r:
            assert r.status == 200  # the console's login: session cookies
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


async def test_the_terminal_closes_when_the_environment_stops(access_world):
    """A second environment (the shared one must keep running): open its terminal, stop
    it through the API, and the websocket closes within seconds, saying why."""
    world = access_world
    server = world.server
    code, ws_list = server.request("GET", "/api/v1/workspaces", token=world.alice.token)
    assert code == 200, ws_list
    code, env = server.request(
        "POST", "/api/v1/environments",
        {"name": "term-stop", "workspace_id": ws_list["items"][0]["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1},
        token=world.alice.token,
    )
    assert code == 202, env
    env_id = env["id"]
    try:
        await asyncio.to_thread(wait_running, server, world.alice.token, env_id)
        headers = {"Authorization": f"Bearer {world.alice.token}"}
        async with aiohttp.ClientSession(server.url) as s:
            async with s.ws_connect(f"/api/v1/environments/{env_id}/terminal", headers=headers) as ws:
                await ws.send_str("echo ready-$((40+2))\r")
                await read_until(ws, "ready-42")
                code, body = await asyncio.to_thread(
                    server.request, "POST", f"/api/v1/environments/{env_id}/stop", None, token=world.alice.token)
                assert code in (200, 202), body
                stopped_at = time.monotonic()
                while True:
                    msg = await ws.receive(timeout=15)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        break
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                took = time.monotonic() - stopped_at
                assert ws.close_code == 1001, (ws.close_code, msg)
                assert "environment stopped" in (msg.extra or ""), msg
                assert took < 10, f"closed only after {took:.1f}s"
    finally:
        await asyncio.to_thread(server.request, "DELETE", f"/api/v1/environments/{env_id}", None, token=world.alice.token)
