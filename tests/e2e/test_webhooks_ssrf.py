"""SSRF: the classic bypasses, each tried for real against a receiver listening on
127.0.0.1 — which would record the request if any got through. These tests run
WITHOUT an allowlist (the operator's REMOTEGPU_WEBHOOK_ALLOW_CIDRS), except where a
reachable "allowed receiver" is the point (the redirect)."""

from __future__ import annotations

import aiohttp
import pytest
from dependency_injector import providers

from remotegpu.adapters.webhooks.sender import AiohttpWebhookSender, StaticResolver
from remotegpu.domain.webhooks.addresses import AddressPolicy, parse_cidrs
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.webhooks import Receiver, seed_webhook

HOOKS = "/api/v1/webhooks"
#: A "DNS" the tests control: these names resolve to loopback / metadata addresses.
TEST_DNS = {"internal.example": "127.0.0.1", "metadata.example": "169.254.169.254", "v6.example": "::1",
            "public.example": "127.0.0.1"}


async def _client(aiohttp_client, tmp_path, allow: str = ""):
    container = build_container(make_settings(tmp_path, webhook_allow_cidrs=allow), persistence="memory")
    sender = AiohttpWebhookSender(AddressPolicy(parse_cidrs(allow)), resolver=StaticResolver(TEST_DNS))
    container.webhook_sender.override(providers.Object(sender))
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    return client, container, sender


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def bypasses(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook",
        f"http://2130706433:{port}/hook",  # decimal
        f"http://0177.0.0.1:{port}/hook",  # octal
        f"http://0x7f000001:{port}/hook",  # hex
        f"http://0x7f.0.0.1:{port}/hook",
        f"http://127.1:{port}/hook",  # short form
        f"http://0:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped
        f"http://[::ffff:7f00:1]:{port}/hook",
        f"http://[::127.0.0.1]:{port}/hook",  # IPv4-compatible
        f"http://[2002:7f00:1::]:{port}/hook",  # 6to4 of 127.0.0.1
        f"http://[64:ff9b::7f00:1]:{port}/hook",  # NAT64 of 127.0.0.1
        f"http://[::1]:{port}/hook",
        f"http://[::]:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://localhost.:{port}/hook",  # trailing dot
        f"http://LOCALHOST:{port}/hook",
        f"http://internal.example:{port}/hook",  # a DNS name resolving to 127.0.0.1
        f"http://internal.example.:{port}/hook",
        f"http://metadata.example:{port}/hook",
        f"http://v6.example:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",  # private, CGNAT
        "http://[fc00::1]/", "http://[fe80::1]/", "http://224.0.0.1/", "http://255.255.255.255/",
    ]


async def test_every_bypass_is_refused_and_logged(aiohttp_client, tmp_path, receiver):
    client, container, sender = await _client(aiohttp_client, tmp_path)
    user = await signup(client)
    try:
        for url in bypasses(receiver.port):
            # Registration refuses what it can tell without resolving; names pass, sending refuses them.
            r = await client.post(HOOKS, json={"workspace_id": user.personal_workspace_id, "url": url}, headers=user.headers)
            if r.status == 201:
                endpoint_id = (await r.json())["id"]
            else:
                assert r.status == 422 and (await r.json())["error"]["code"] == "address_refused", (url, await r.text())
                endpoint_id, _ = await seed_webhook(container, user.personal_workspace_id, user.id, url=url)
            r = await client.post(f"{HOOKS}/{endpoint_id}/test", headers=user.headers)
            assert r.status == 200, await r.text()
            delivery = await r.json()
            assert delivery["status"] == "failed" and delivery["response_status"] is None, (url, delivery)
            assert delivery["error"].startswith("refused:"), (url, delivery["error"])
            log = (await (await client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=user.headers)).json())["items"]
            assert log[0]["error"].startswith("refused:"), url
        assert receiver.received == []
    finally:
        await sender.close()


async def test_the_test_resolver_does_reach_the_receiver_when_allowed(aiohttp_client, tmp_path, receiver):
    """Control: with 127.0.0.1 allowlisted the same names are delivered, so the refusals
    above come from the policy, not from a broken resolver."""
    client, container, sender = await _client(aiohttp_client, tmp_path, allow="127.0.0.1/32")
    user = await signup(client)
    try:
        for host in ("internal.example", "internal.example.", "127.0.0.1"):
            r = await client.post(HOOKS, json={"workspace_id": user.personal_workspace_id, "url": f"http://{host}:{receiver.port}/hook"},
                                  headers=user.headers)
            assert r.status == 201, await r.text()
            r = await client.post(f"{HOOKS}/{(await r.json())['id']}/test", headers=user.headers)
            assert (await r.json())["status"] == "succeeded", await r.text()
        assert len(receiver.received) == 3
        assert receiver.received[0].headers["Host"] == f"internal.example:{receiver.port}"  # the name, not the address
        # Still refused although 127.0.0.1 is allowed: what is not allowlisted.
        r = await client.post(HOOKS, json={"workspace_id": user.personal_workspace_id, "url": f"http://metadata.example:{receiver.port}/"},
                              headers=user.headers)
        r = await client.post(f"{HOOKS}/{(await r.json())['id']}/test", headers=user.headers)
        assert (await r.json())["error"].startswith("refused:")
    finally:
        await sender.close()


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "/second-hop"])
async def test_redirects_are_not_followed(aiohttp_client, tmp_path, receiver, location):
    client, container, sender = await _client(aiohttp_client, tmp_path, allow="127.0.0.1/32")
    user = await signup(client)
    receiver.script = [(302, {"Location": location})]
    try:
        r = await client.post(HOOKS, json={"workspace_id": user.personal_workspace_id, "url": receiver.url}, headers=user.headers)
        endpoint_id = (await r.json())["id"]
        delivery = await (await client.post(f"{HOOKS}/{endpoint_id}/test", headers=user.headers)).json()
        assert delivery["status"] == "failed" and delivery["response_status"] == 302
        assert "not followed" in delivery["error"] and location in delivery["error"]
        assert len(receiver.received) == 1  # the second hop never happened
    finally:
        await sender.close()


async def test_response_bodies_are_capped(aiohttp_client, tmp_path):
    from aiohttp import web

    async def huge(request):
        return web.Response(text="x" * 1_000_000)

    app = web.Application()
    app.router.add_post("/", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sender = AiohttpWebhookSender(AddressPolicy(parse_cidrs("127.0.0.1/32")))
    try:
        result = await sender.send(f"http://127.0.0.1:{port}/", {}, b"{}")
        assert result.ok and len(result.body) == 4096
    finally:
        await sender.close()
        await runner.cleanup()


async def test_a_slow_endpoint_times_out():
    import asyncio

    from aiohttp import web

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sender = AiohttpWebhookSender(AddressPolicy(parse_cidrs("127.0.0.1/32")), timeout=0.3)  # 15 s in production
    try:
        result = await sender.send(f"http://127.0.0.1:{port}/", {}, b"{}")
        assert result.status is None and result.error.startswith("timed out") and not result.refused
    finally:
        await sender.close()
        await runner.cleanup()
