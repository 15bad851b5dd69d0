"""SMS over HTTP against a local Aliyun-style provider that verifies every signature with
its own implementation (tests/support/sms_provider.py): a phone number is verified by
code before use, SMS is opt-in per category, and no number gets more than 1 message a
minute (5 an hour, 10 a day) per template. In-memory store and SQLite (migrated)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.notifications.models import Channel, DeliveryStatus
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.sms_provider import SmsProvider

PHONE = "/api/v1/users/me/phone"
PREFS = "/api/v1/users/me/notification-preferences"


@pytest.fixture
async def provider():
    p = await SmsProvider().start()
    yield p
    await p.stop()


def _settings(tmp_path, provider, secret="test-secret"):
    return make_settings(
        tmp_path, sms_provider="aliyun", sms_endpoint=provider.url, sms_access_key_id="LTAI-test",
        sms_access_key_secret=secret, sms_sign_name="RemoteGPU", sms_template_verify="SMS_100",
        sms_template_notify="SMS_200",
    )


@pytest.fixture(params=["memory", "sqlite"])
async def world(request, aiohttp_client, tmp_path, provider):
    clock = FrozenClock()
    settings = _settings(tmp_path, provider)
    container = build_container(settings, persistence="memory" if request.param == "memory" else "sql")
    if request.param == "sqlite":
        await asyncio.to_thread(upgrade, settings.effective_database_url)
    container.phone_service.add_kwargs(clock=clock)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    return client, container, clock


def _code(params: dict[str, str]) -> str:
    return json.loads(params["TemplateParam"])["code"]


async def test_a_number_is_verified_by_code_and_limited_per_minute(world, provider):
    client, container, clock = world
    alice = await signup(client)
    got = await (await client.get(PHONE, headers=alice.headers)).json()
    assert got == {"number": None, "verified_at": None, "pending_number": None, "code_expires_at": None, "sms_enabled": True}
    r = await client.put(PHONE, json={"number": "138 0013 8000"}, headers=alice.headers)
    assert r.status == 202, await r.text()
    assert (await r.json())["pending_number"] == "+8613800138000"
    [sent] = provider.accepted
    assert sent["PhoneNumbers"] == "13800138000" and sent["TemplateCode"] == "SMS_100" and sent["SignName"] == "RemoteGPU"
    code = _code(sent)
    assert len(code) == 6 and code.isdigit()

    # The same number again within the minute: refused before the provider is asked.
    r = await client.put(PHONE, json={"number": "+8613800138000"}, headers=alice.headers)
    assert r.status == 429 and (await r.json())["error"]["details"]["retry_after"] == 60
    assert len(provider.accepted) == 1

    wrong = "000000" if code != "000000" else "111111"
    r = await client.post(PHONE + "/verify", json={"code": wrong}, headers=alice.headers)
    assert r.status == 422 and (await r.json())["error"]["details"]["attempts_left"] == 4
    r = await client.post(PHONE + "/verify", json={"code": code}, headers=alice.headers)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["number"] == "+8613800138000" and body["verified_at"] and body["pending_number"] is None
    r = await client.post(PHONE + "/verify", json={"code": code}, headers=alice.headers)  # used up
    assert r.status == 409 and (await r.json())["error"]["code"] == "code_expired"

    # A new number's code expires after 10 minutes; the verified number stays meanwhile.
    clock.advance(minutes=1)
    r = await client.put(PHONE, json={"number": "+447700900123"}, headers=alice.headers)
    assert r.status == 202 and (await r.json())["number"] == "+8613800138000"
    clock.advance(minutes=11)
    r = await client.post(PHONE + "/verify", json={"code": _code(provider.accepted[-1])}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "code_expired"

    r = await client.put(PHONE, json={"number": "12345"}, headers=alice.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_phone"
    assert (await client.delete(PHONE, headers=alice.headers)).status == 204
    assert (await (await client.get(PHONE, headers=alice.headers)).json())["number"] is None


async def test_five_wrong_codes_void_it_and_one_user_cannot_spray_numbers(world, provider):
    client, container, clock = world
    alice = await signup(client)
    await client.put(PHONE, json={"number": "+8613800138001"}, headers=alice.headers)
    for _ in range(5):
        await client.post(PHONE + "/verify", json={"code": "999999" if _code(provider.accepted[-1]) != "999999" else "888888"},
                          headers=alice.headers)
    r = await client.post(PHONE + "/verify", json={"code": _code(provider.accepted[-1])}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "code_expired"
    # Another number within the minute: the per-user limit answers, the provider is not asked.
    r = await client.put(PHONE, json={"number": "+8613800138002"}, headers=alice.headers)
    assert r.status == 429 and len(provider.accepted) == 1


async def test_sms_notifications_are_opt_in_signed_and_rate_limited(world, provider):
    client, container, clock = world
    admin, alice, bob = await signup(client, admin_container=container), await signup(client), await signup(client)
    for account, number in ((alice, "+8613800138010"), (bob, "+8613800138011")):
        await client.put(PHONE, json={"number": number}, headers=account.headers)
        r = await client.post(PHONE + "/verify", json={"code": _code(provider.accepted[-1])}, headers=account.headers)
        assert r.status == 200
    prefs = await (await client.get(PREFS, headers=alice.headers)).json()
    assert prefs["channels"] == ["in_app", "sms"] and prefs["categories"]["support"]["sms"] is False
    r = await client.put(PREFS, json={"categories": {"support": {"in_app": True, "email": True, "sms": True}}}, headers=alice.headers)
    assert r.status == 200 and (await r.json())["categories"]["support"]["sms"] is True
    before = len(provider.accepted)

    tickets = []
    for account in (alice, bob):
        r = await client.post("/api/v1/tickets", json={"subject": "Disk full", "description": "d"}, headers=account.headers)
        tickets.append((await r.json())["id"])
    for tid in tickets:  # two replies each within the same minute
        for text in ("first", "second"):
            r = await client.post(f"/api/v1/tickets/{tid}/comments", json={"body": text}, headers=admin.headers)
            assert r.status == 201
    await container.task_queue().drain()
    notify = provider.accepted[before:]
    # Alice opted in: exactly one SMS (the second reply was within the minute); bob did not: none.
    assert [(p["PhoneNumbers"], p["TemplateCode"]) for p in notify] == [("13800138010", "SMS_200")]
    assert json.loads(notify[0]["TemplateParam"]) == {"title": "Reply on your ticket: Disk full"}
    assert provider.refused == []
    sms = []
    for n in (await container.notification_repo().list_for_user(alice.id, unread_only=False, limit=50, offset=0))[0]:
        sms += [d for d in await container.notification_repo().list_deliveries(n.id) if d.channel is Channel.SMS]
    assert sorted(d.status.value for d in sms) == ["failed", "sent"]
    assert "rate limited" in next(d.last_error for d in sms if d.status is DeliveryStatus.FAILED)
    assert notify[0]["OutId"] == next(d.idempotency_key for d in sms if d.status is DeliveryStatus.SENT)


async def test_a_wrongly_signed_request_is_refused_by_the_provider(aiohttp_client, tmp_path, provider):
    container = build_container(_settings(tmp_path, provider, secret="not-the-secret"), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    alice = await signup(client)
    r = await client.put(PHONE, json={"number": "+8613800138020"}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "sms_rejected"
    assert [code for code, _ in provider.refused] == ["SignatureDoesNotMatch"] and provider.accepted == []


async def test_without_a_provider_there_is_no_sms_channel(client, new_account):
    alice = await new_account()
    assert (await (await client.get(PHONE, headers=alice.headers)).json())["sms_enabled"] is False
    r = await client.put(PHONE, json={"number": "+8613800138000"}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "sms_not_configured"
    assert "sms" not in (await (await client.get(PREFS, headers=alice.headers)).json())["channels"]
