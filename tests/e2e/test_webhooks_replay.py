"""Webhooks: replay of a time range, the notice to workspace admins when an endpoint is
disabled after days of failures, and event types other contexts register (tickets)."""

from __future__ import annotations

import json
from datetime import timedelta

from remotegpu.domain.webhooks import events
from tests.conftest import signup
from tests.e2e.test_webhooks import HOOKS, clock, log_of, receiver, register, wh  # noqa: F401 - fixtures
from tests.support.workspaces import join_workspace


def _iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def test_replay_sends_a_ranges_messages_again_once_each(wh, receiver, clock):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    svc = container.webhook_service()
    url = f"{HOOKS}/{endpoint['id']}/replay"
    start = clock.now()
    window = {"since": _iso(start), "until": _iso(start + timedelta(hours=1))}
    await svc.publish(user.personal_workspace_id, "environment.stopped", {"n": 0})  # delivered
    await svc.dispatch_due()
    clock.advance(minutes=1)
    await client.post(f"{HOOKS}/{endpoint['id']}/test", headers=user.headers)  # test messages are never replayed
    receiver.script = [(500, {})] * 8
    await svc.publish(user.personal_workspace_id, "environment.stopped", {"n": 1})  # fails
    await svc.dispatch_due()
    r = await client.post(url, json=window, headers=user.headers)
    assert r.status == 202, await r.text()
    assert await r.json() == {"queued": 0, "skipped": 2, "truncated": False}  # n=1 is still being retried: not twice
    for _ in range(12):  # the whole retry schedule: n=1 is given up
        clock.advance(hours=11)
        await svc.dispatch_due()
    await svc.publish(user.personal_workspace_id, "environment.stopped", {"n": 2})  # later: outside the window
    await svc.dispatch_due()
    log = await log_of(client, user, endpoint["id"])
    assert sorted(d["status"] for d in log) == ["failed", "succeeded", "succeeded", "succeeded"]
    ids = {json.loads(d["request_body"])["data"].get("n"): d["message_id"] for d in log if d["event_type"] != "webhook.test"}

    # Only the never-delivered one, once, with its webhook-id and body.
    receiver.received.clear()
    r = await client.post(url, json=window, headers=user.headers)
    assert await r.json() == {"queued": 1, "skipped": 1, "truncated": False}
    await svc.dispatch_due()
    assert [g.headers["webhook-id"] for g in receiver.received] == [ids[1]]
    assert json.loads(receiver.received[0].body)["data"] == {"n": 1}  # (signatures: test_webhooks.py; this clock is days ahead)

    # Everything in the window, delivered or not; n=2 lies outside it.
    receiver.received.clear()
    r = await client.post(url, json={**window, "only_failed": False}, headers=user.headers)
    assert (await r.json())["queued"] == 2
    await svc.dispatch_due()
    assert sorted(g.headers["webhook-id"] for g in receiver.received) == sorted([ids[0], ids[1]])  # sent concurrently

    r = await client.post(url, json={"since": _iso(start - timedelta(days=1)), "until": _iso(start)}, headers=user.headers)
    assert (await r.json())["queued"] == 0
    r = await client.post(url, json={"since": _iso(start), "until": _iso(start)}, headers=user.headers)
    assert r.status == 422
    r = await client.post(url, json={"since": "2026-11-30T08:00:00", "until": _iso(start)}, headers=user.headers)
    assert r.status == 422
    other = await signup(client)
    r = await client.post(url, json=window, headers=other.headers)
    assert r.status == 404


async def test_an_endpoint_failing_for_days_is_disabled_and_the_workspace_admins_are_told(wh, receiver, clock):
    client, container = wh
    owner, admin, member = await signup(client), await signup(client), await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=owner.headers)).json())["id"]
    await join_workspace(client, owner, ws, admin, "admin")
    await join_workspace(client, owner, ws, member, "member")
    r = await client.post(HOOKS, json={"workspace_id": ws, "url": receiver.url}, headers=owner.headers)
    endpoint = await r.json()
    receiver.script = [(500, {})] * 100
    svc = container.webhook_service()
    await svc.publish(ws, "environment.failed", {})
    await svc.dispatch_due()
    clock.advance(days=5, minutes=1)
    await svc.publish(ws, "environment.failed", {})
    await svc.dispatch_due()
    got = await (await client.get(f"{HOOKS}/{endpoint['id']}", headers=owner.headers)).json()
    assert got["enabled"] is False and got["disabled_reason"] == "failing for 5 days"

    async def notices(account) -> list[dict]:
        items = (await (await client.get("/api/v1/notifications", headers=account.headers)).json())["items"]
        return [n for n in items if n["kind"] == "webhook.endpoint_disabled"]

    for account in (owner, admin):
        [n] = await notices(account)
        assert receiver.url in n["title"] and "failing for 5 days" in n["body"] and n["link"] == "/webhooks"
    assert await notices(member) == []


async def test_event_types_are_open_to_other_contexts(wh):
    client, container = wh
    user = await signup(client)
    events.register("billing.test_probe", "registered by a test, as billing or alerts would")
    types = {t["type"] for t in (await (await client.get(f"{HOOKS}/event-types", headers=user.headers)).json())["items"]}
    assert {"billing.test_probe", "ticket.created", "ticket.replied", "ticket.status_changed", "ticket.sla_breached"} <= types
    r = await client.post(HOOKS, json={"workspace_id": user.personal_workspace_id, "url": "https://hooks.example.com/x",
                                       "event_types": ["billing.test_probe", "ticket.created"]}, headers=user.headers)
    assert r.status == 201, await r.text()
