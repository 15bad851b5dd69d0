"""Support tickets over HTTP, on the in-memory store and on SQLite (migrated).

The ticket service runs on a controllable clock (sign-in keeps the real one); the
automations are run by the test (``sweep``), as the server's loop would every minute.
Business hours: Mon-Fri 09:00-18:00 UTC; high priority targets 4h first response / 16h resolution.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
import pytest

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup

TICKETS = "/api/v1/tickets"
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # a Monday


@pytest.fixture
def clock():
    return FrozenClock(MONDAY_9)


@pytest.fixture(params=["memory", "sqlite"])
async def world(request, aiohttp_client, tmp_path, clock):
    settings = make_settings(tmp_path, support_sla_targets="urgent=1h/4h,high=4h/16h,normal=8h/40h,low=24h/80h")
    container = build_container(settings, persistence="memory" if request.param == "memory" else "sql")
    if request.param == "sqlite":
        await asyncio.to_thread(upgrade, settings.effective_database_url)
    container.ticket_service.add_kwargs(clock=clock)
    container.webhook_service.add_kwargs(clock=clock)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    return client, container, admin


async def _inbox(client, account) -> list[dict]:
    r = await client.get("/api/v1/notifications?limit=100", headers=account.headers)
    assert r.status == 200
    return (await r.json())["items"]


def _kinds(items: list[dict]) -> list[str]:
    return [n["kind"] for n in items if n["kind"].startswith("support.")]


async def _open(client, account, **extra) -> dict:
    body = {"subject": "GPU not visible", "description": "nvidia-smi shows nothing", "category": "environment",
            "priority": "high", **extra}
    r = await client.post(TICKETS, json=body, headers=account.headers)
    assert r.status == 201, await r.text()
    return await r.json()


async def test_ticket_workflow_replies_notes_and_who_sees_what(world, clock):
    client, container, admin = world
    alice, bob = await signup(client), await signup(client)
    ticket = await _open(client, alice)
    assert ticket["status"] == "new" and ticket["requester_id"] == alice.id and ticket["workspace_id"] is None
    tid = ticket["id"]
    # The team heard of it; bob does not even see it.
    assert "support.ticket_created" in _kinds(await _inbox(client, admin))
    for method, path, body in (("GET", f"{TICKETS}/{tid}", None), ("POST", f"{TICKETS}/{tid}/comments", {"body": "hi"}),
                               ("POST", f"{TICKETS}/{tid}/solve", None), ("PATCH", f"{TICKETS}/{tid}", {"status": "open"})):
        r = await client.request(method, path, json=body, headers=bob.headers)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found", (method, path)
    assert (await (await client.get(TICKETS, headers=bob.headers)).json())["total"] == 0
    r = await client.get("/api/v1/support/queue", headers=alice.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "support_role_required"

    # Staff: an internal note (never shown to alice, nothing notified) and a public reply → pending.
    r = await client.post(f"{TICKETS}/{tid}/comments", json={"body": "driver mismatch on host 3", "internal": True}, headers=admin.headers)
    assert r.status == 201 and (await r.json())["internal"] is True
    clock.advance(minutes=30)
    r = await client.post(f"{TICKETS}/{tid}/comments", json={"body": "Please restart the environment", "status": "pending"},
                          headers=admin.headers)
    assert r.status == 201, await r.text()
    mine = await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json()
    assert mine["status"] == "pending" and mine["staff_view"] is False and mine["allowed_statuses"] == []
    assert [c["body"] for c in mine["comments"]] == ["Please restart the environment"]
    assert mine["first_response_at"] is not None and mine["sla_breached"] == []
    staff = await (await client.get(f"{TICKETS}/{tid}", headers=admin.headers)).json()
    assert [c["internal"] for c in staff["comments"]] == [True, False] and staff["staff_view"] is True
    inbox = await _inbox(client, alice)
    assert _kinds(inbox) == ["support.reply"] and "restart" in inbox[0]["body"] and inbox[0]["link"] == f"/tickets/{tid}"
    assert "driver mismatch" not in str(inbox)

    # Alice may not write notes nor set the status; her reply puts it back to open.
    r = await client.post(f"{TICKETS}/{tid}/comments", json={"body": "x", "internal": True}, headers=alice.headers)
    assert r.status == 403
    r = await client.patch(f"{TICKETS}/{tid}", json={"status": "solved"}, headers=alice.headers)
    assert r.status == 403
    r = await client.post(f"{TICKETS}/{tid}/comments", json={"body": "Restarted, still broken"}, headers=alice.headers)
    assert r.status == 201
    assert (await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json())["status"] == "open"
    assert "support.customer_reply" in _kinds(await _inbox(client, admin))

    # A move the workflow does not have: 409 with what is allowed.
    r = await client.patch(f"{TICKETS}/{tid}", json={"status": "closed"}, headers=admin.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_transition"
    r = await client.patch(f"{TICKETS}/{tid}", json={"status": "solved"}, headers=admin.headers)
    assert r.status == 200 and (await r.json())["status"] == "solved"
    assert "support.solved" in _kinds(await _inbox(client, alice))
    # Reopened by the requester, solved again; closes after 4 days (not before).
    r = await client.post(f"{TICKETS}/{tid}/reopen", headers=alice.headers)
    assert r.status == 200 and (await r.json())["status"] == "open"
    r = await client.post(f"{TICKETS}/{tid}/solve", headers=alice.headers)
    assert r.status == 200 and (await r.json())["status"] == "solved"
    clock.advance(days=3, hours=23)
    await container.ticket_service().sweep()
    assert (await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json())["status"] == "solved"
    clock.advance(hours=2)
    assert (await container.ticket_service().sweep())["closed"] == 1
    closed = await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json()
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    r = await client.post(f"{TICKETS}/{tid}/comments", json={"body": "again"}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "ticket_closed"
    r = await client.post(f"{TICKETS}/{tid}/reopen", headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "ticket_closed"

    listed = await (await client.get(TICKETS + "?status=closed", headers=alice.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == tid
    r = await client.get(TICKETS + "?status=nonsense", headers=alice.headers)
    assert r.status == 422


async def test_sla_near_breach_and_breach_alert_the_team_and_the_clock_pauses_while_pending(world, clock):
    client, container, admin = world
    alice, agent = await signup(client), await signup(client)
    r = await client.put(f"/api/v1/support/agents/{agent.id}", headers=admin.headers)
    assert r.status == 200
    assert (await (await client.get("/api/v1/support/me", headers=agent.headers)).json())["is_staff"] is True
    assert (await (await client.get("/api/v1/support/me", headers=alice.headers)).json())["is_staff"] is False
    tid = (await _open(client, alice))["id"]  # Monday 09:00, high: first response due 13:00, resolution 16 business hours
    sweep = container.ticket_service().sweep

    clock.advance(hours=3)  # 75%: nothing yet
    assert (await sweep())["sla_alerts"] == 0
    clock.advance(minutes=15)  # 81%: near breach, once
    assert (await sweep())["sla_alerts"] == 1
    assert (await sweep())["sla_alerts"] == 0
    assert _kinds(await _inbox(client, agent)) == ["support.sla_warning", "support.ticket_created"]
    clock.advance(minutes=46)  # 13:01: breached
    assert (await sweep())["sla_alerts"] == 1
    breach = [n for n in await _inbox(client, agent) if n["kind"] == "support.sla_breach"]
    assert len(breach) == 1 and breach[0]["severity"] == "critical" and "first response" in breach[0]["title"]
    assert alice.id not in str(breach)
    got = await (await client.get(f"{TICKETS}/{tid}", headers=agent.headers)).json()
    assert got["sla_breached"] == ["first_response"]
    first, resolution = got["sla"]
    assert first["breached"] and resolution["elapsed_seconds"] == pytest.approx(4 * 3600 + 60)
    # Resolution due: 16h - 4h01m = 11h59m of business time left: 4h59m today (to 18:00), 7h on Tuesday from 09:00.
    assert resolution["due_at"].startswith("2026-12-01T16:00")

    # Assigned to the agent, answered with pending: the clock stops.
    r = await client.patch(f"{TICKETS}/{tid}", json={"assignee_id": agent.id}, headers=admin.headers)
    assert r.status == 200 and (await r.json())["assignee"] == agent.username
    r = await client.patch(f"{TICKETS}/{tid}", json={"assignee_id": alice.id}, headers=admin.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "not_support_staff"
    await client.post(f"{TICKETS}/{tid}/comments", json={"body": "Which image?", "status": "pending"}, headers=agent.headers)
    paused = (await (await client.get(f"{TICKETS}/{tid}", headers=agent.headers)).json())["sla"][1]
    clock.advance(days=2)
    assert (await sweep())["sla_alerts"] == 0
    later = (await (await client.get(f"{TICKETS}/{tid}", headers=agent.headers)).json())["sla"][1]
    assert later["paused"] and later["due_at"] is None and later["elapsed_seconds"] == paused["elapsed_seconds"]

    # Pending 3 days: the requester is reminded once; her answer restarts the clock.
    clock.advance(days=1, minutes=1)
    assert (await sweep())["reminded"] == 1
    assert (await sweep())["reminded"] == 0
    assert _kinds(await _inbox(client, alice)).count("support.pending_reminder") == 1
    await client.post(f"{TICKETS}/{tid}/comments", json={"body": "pytorch image"}, headers=alice.headers)
    running = (await (await client.get(f"{TICKETS}/{tid}", headers=agent.headers)).json())
    assert running["status"] == "open" and running["sla"][1]["paused"] is False and running["sla"][1]["due_at"] is not None


async def test_a_pending_ticket_without_an_answer_is_solved_then_closed(world, clock):
    client, container, admin = world
    alice = await signup(client)
    tid = (await _open(client, alice, priority="low"))["id"]
    await client.post(f"{TICKETS}/{tid}/comments", json={"body": "Does it work now?", "status": "pending"}, headers=admin.headers)
    clock.advance(days=7, minutes=1)
    done = await container.ticket_service().sweep()
    assert done["auto_solved"] == 1
    assert (await (await client.get(f"{TICKETS}/{tid}", headers=alice.headers)).json())["status"] == "solved"
    assert "support.auto_solved" in _kinds(await _inbox(client, alice))
    clock.advance(days=4, minutes=1)
    assert (await container.ticket_service().sweep())["closed"] == 1


async def test_queue_filters_agents_and_webhook_events(world, clock):
    client, container, admin = world
    alice, agent = await signup(client), await signup(client)
    r = await client.put(f"/api/v1/support/agents/{agent.id}", headers=alice.headers)
    assert r.status == 403
    await client.put(f"/api/v1/support/agents/{agent.id}", headers=admin.headers)
    agents = await (await client.get("/api/v1/support/agents", headers=admin.headers)).json()
    assert [a["username"] for a in agents["items"]] == [agent.username]
    # A ticket about alice's personal workspace reaches its webhooks (never the notes).
    r = await client.post("/api/v1/webhooks", json={"workspace_id": alice.personal_workspace_id,
                                                      "url": "https://hooks.example.com/in", "event_types": ["ticket.created", "ticket.replied", "ticket.status_changed"]},
                          headers=alice.headers)
    assert r.status == 201, await r.text()
    hook = (await r.json())["id"]
    t1 = (await _open(client, alice, workspace_id=alice.personal_workspace_id))["id"]
    t2 = (await _open(client, alice, priority="urgent"))["id"]
    await client.post(f"{TICKETS}/{t1}/comments", json={"body": "secret note", "internal": True}, headers=agent.headers)
    await client.post(f"{TICKETS}/{t1}/comments", json={"body": "on it", "status": "pending"}, headers=agent.headers)
    await client.patch(f"{TICKETS}/{t2}", json={"assignee_id": agent.id}, headers=agent.headers)
    q = await (await client.get("/api/v1/support/queue?assignee=me", headers=agent.headers)).json()
    assert [t["id"] for t in q["items"]] == [t2]
    q = await (await client.get("/api/v1/support/queue?assignee=none&status=pending", headers=agent.headers)).json()
    assert [t["id"] for t in q["items"]] == [t1]
    q = await (await client.get("/api/v1/support/queue?priority=urgent", headers=agent.headers)).json()
    assert [t["id"] for t in q["items"]] == [t2]
    deliveries, _ = await container.webhook_store().list_deliveries(hook, 50, 0)
    assert sorted(d.event_type for d in deliveries) == ["ticket.created", "ticket.replied", "ticket.status_changed"]
    assert all("secret note" not in d.body for d in deliveries)
    types = await (await client.get("/api/v1/webhooks/event-types", headers=alice.headers)).json()
    assert {"ticket.created", "ticket.replied", "ticket.status_changed", "ticket.sla_breached"} <= {t["type"] for t in types["items"]}
    r = await client.delete(f"/api/v1/support/agents/{agent.id}", headers=admin.headers)
    assert r.status == 204
    assert (await client.get("/api/v1/support/queue", headers=agent.headers)).status == 403
    # An environment someone else owns cannot be named.
    r = await client.post(TICKETS, json={"subject": "s", "description": "d", "environment_id": "no-such"}, headers=alice.headers)
    assert r.status == 404
    r = await client.post(TICKETS, json={"subject": "s", "description": "d", "workspace_id": admin.personal_workspace_id},
                          headers=alice.headers)
    assert r.status == 404
    r = await client.post(TICKETS, json={"subject": " ", "description": "d"}, headers=alice.headers)
    assert r.status == 422


async def test_an_sla_breach_is_a_webhook_event_of_the_tickets_workspace(world, clock):
    client, container, admin = world
    alice = await signup(client)
    r = await client.post("/api/v1/webhooks", json={"workspace_id": alice.personal_workspace_id, "url": "https://hooks.example.com/in",
                                                      "event_types": ["ticket.sla_breached"]}, headers=alice.headers)
    hook = (await r.json())["id"]
    await _open(client, alice, priority="urgent", workspace_id=alice.personal_workspace_id)  # first response due in 1 h
    clock.advance(minutes=61)
    assert (await container.ticket_service().sweep())["sla_alerts"] == 1  # straight to breach: no warning first
    deliveries, _ = await container.webhook_store().list_deliveries(hook, 50, 0)
    assert [d.event_type for d in deliveries] == ["ticket.sla_breached"]
    assert '"target":"first_response"' in deliveries[0].body and '"priority":"urgent"' in deliveries[0].body


async def test_two_agents_acting_at_once_do_not_overwrite_each_other(world, clock):
    client, container, admin = world
    alice = await signup(client)
    tid = (await _open(client, alice))["id"]
    repo = container.ticket_repo()
    stale = await repo.get(tid)  # what a slower agent read before the other one saved
    r = await client.patch(f"{TICKETS}/{tid}", json={"priority": "urgent"}, headers=admin.headers)
    assert r.status == 200
    stale.priority = stale.priority.LOW
    assert await repo.save(stale) is False
    assert (await repo.get(tid)).priority.value == "urgent"
