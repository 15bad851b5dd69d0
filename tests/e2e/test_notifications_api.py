"""/api/v1/notifications and /api/v1/users/me/notification-preferences over HTTP.

A new API token is a security event: it lands in its owner's inbox (and the unread
count is pushed on the event stream), nobody else's.
"""

from __future__ import annotations

from tests.e2e.test_event_stream import open_stream

INBOX = "/api/v1/notifications"
PREFS = "/api/v1/users/me/notification-preferences"


async def _token_notification(client, account) -> dict:
    r = await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=account.headers)
    assert r.status == 201, await r.text()
    r = await client.get(INBOX, headers=account.headers)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["unread"] == 1 and body["total"] == 1, body
    return body["items"][0]


async def test_inbox_read_and_read_all(client, new_account):
    alice, bob = await new_account(), await new_account()
    n = await _token_notification(client, alice)
    assert n["kind"] == "security.token_created" and n["category"] == "security" and n["read_at"] is None
    assert "ci" in n["title"] and n["link"] == "/account"

    assert (await (await client.get(INBOX, headers=bob.headers)).json()) == {"items": [], "total": 0, "unread": 0}
    r = await client.post(f"{INBOX}/{n['id']}/read", headers=bob.headers)  # another user's: does not exist for bob
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await client.post(f"{INBOX}/no-such-id/read", headers=alice.headers)
    assert r.status == 404

    r = await client.post(f"{INBOX}/{n['id']}/read", headers=alice.headers)
    assert r.status == 204
    body = await (await client.get(INBOX, headers=alice.headers)).json()
    assert body["unread"] == 0 and body["items"][0]["read_at"] is not None
    assert (await (await client.get(INBOX + "?unread=true", headers=alice.headers)).json())["total"] == 0

    await client.post("/api/v1/users/me/tokens", json={"name": "two"}, headers=alice.headers)
    await client.post("/api/v1/users/me/tokens", json={"name": "three"}, headers=alice.headers)
    r = await client.post(f"{INBOX}/read-all", headers=alice.headers)
    assert r.status == 200 and await r.json() == {"marked": 2, "unread": 0}
    assert (await (await client.get(INBOX, headers=alice.headers)).json())["total"] == 3

    r = await client.get(INBOX + "?limit=0", headers=alice.headers)
    assert r.status == 422 and "error" in await r.json()


async def test_unread_count_is_pushed_on_the_event_stream(client, new_account):
    alice = await new_account()
    stream = await open_stream(client, alice)
    await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=alice.headers)
    event, data = await stream.next_event(timeout=10)
    assert (event, data) == ("notifications", {"type": "notifications", "unread": 1})
    await client.post(f"{INBOX}/read-all", headers=alice.headers)
    event, data = await stream.next_event(timeout=10)
    assert (event, data) == ("notifications", {"type": "notifications", "unread": 0})
    stream.response.close()


async def test_preferences_round_trip_and_refuse_turning_security_off(client, new_account):
    alice = await new_account()
    r = await client.get(PREFS, headers=alice.headers)
    assert r.status == 200
    prefs = await r.json()
    assert prefs["locale"] == "en" and prefs["timezone"] == "UTC" and prefs["quiet_hours"] is None
    assert prefs["categories"]["environment"] == {"in_app": True, "email": True, "sms": False}
    assert prefs["always_on"] == ["security"] and prefs["channels"] == ["in_app"]  # no SMTP configured here

    wanted = {"locale": "zh-CN", "timezone": "Asia/Shanghai", "quiet_hours": {"start": "22:00", "end": "07:00"},
              "categories": {"environment": {"in_app": True, "email": False}}}
    r = await client.put(PREFS, json=wanted, headers=alice.headers)
    assert r.status == 200, await r.text()
    got = await (await client.get(PREFS, headers=alice.headers)).json()
    assert got["locale"] == "zh-CN" and got["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert got["categories"]["environment"] == {"in_app": True, "email": False, "sms": False}
    assert got["categories"]["billing"] == {"in_app": True, "email": True, "sms": False}

    # Rendered in the chosen language from now on.
    await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=alice.headers)
    items = (await (await client.get(INBOX, headers=alice.headers)).json())["items"]
    assert items[0]["title"] == "新建了 API 令牌 ci"

    for bad, field in (
        ({"categories": {"security": {"in_app": True, "email": False}}}, "channels"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"locale": "fr"}, None),
        ({"categories": {"weather": {"in_app": False}}}, None),
        ({"unknown": 1}, None),
    ):
        r = await client.put(PREFS, json=bad, headers=alice.headers)
        assert r.status == 422, (bad, await r.text())
        error = (await r.json())["error"]
        assert error["code"] and error["message"]
        if field:
            assert error["details"].get("field") == field, error
    assert (await (await client.get(PREFS, headers=alice.headers)).json())["locale"] == "zh-CN"  # unchanged


async def test_digest_preferences_round_trip(client, new_account):
    alice = await new_account()
    assert (await (await client.get(PREFS, headers=alice.headers)).json())["digest"] == {"categories": [], "period": "daily"}
    r = await client.put(PREFS, json={"digest": {"categories": ["environment", "support"], "period": "hourly"}}, headers=alice.headers)
    assert r.status == 200, await r.text()
    got = await (await client.get(PREFS, headers=alice.headers)).json()
    assert got["digest"] == {"categories": ["environment", "support"], "period": "hourly"}
    r = await client.put(PREFS, json={"digest": {"categories": ["security"]}}, headers=alice.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "always_on"
    r = await client.put(PREFS, json={"digest": {"period": "weekly"}}, headers=alice.headers)
    assert r.status == 422
