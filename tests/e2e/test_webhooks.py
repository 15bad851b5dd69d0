"""Webhooks end to end: the API, a real receiver on 127.0.0.1 (allowlisted), signatures
checked by an independent implementation (the ``standardwebhooks`` package), retries
driven by a controllable clock (the dispatcher is called by the test, not a timer)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aiohttp
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.application.shared.clock import FrozenClock, utcnow
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.e2e.test_environments_api import ENVS, add_host, created
from tests.support.webhooks import Receiver
from tests.support.workspaces import join_workspace

HOOKS = "/api/v1/webhooks"


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture(params=["memory", "sqlite"])
async def wh(request, aiohttp_client, tmp_path, clock):
    """(client, container) with 127.0.0.1 allowlisted for the test's receiver; the
    webhooks run on ``clock`` (sign-in keeps the real one: its tokens must stay valid).
    Every test runs on the in-memory store and on SQLite (migrated, secrets sealed)."""
    settings = make_settings(tmp_path, webhook_allow_cidrs="127.0.0.1/32")
    container = build_container(settings, persistence="memory" if request.param == "memory" else "sql")  # makes the data dir
    if request.param == "sqlite":
        await asyncio.to_thread(upgrade, settings.effective_database_url)
    container.webhook_service.add_kwargs(clock=clock)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    return client, container


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def register(client, account, url: str, **extra) -> dict:
    r = await client.post(HOOKS, json={"workspace_id": account.personal_workspace_id, "url": url, **extra}, headers=account.headers)
    assert r.status == 201, await r.text()
    return await r.json()


def verified(secret: str, received) -> dict:
    """The payload, if the independent implementation accepts the signature."""
    return Webhook(secret).verify(received.body, received.headers)


async def log_of(client, account, endpoint_id: str) -> list[dict]:
    r = await client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=account.headers)
    assert r.status == 200, await r.text()
    return (await r.json())["items"]


async def test_environment_lifecycle_reaches_the_receiver_signed(wh, receiver, clock):
    client, container = wh
    admin = await signup(client, admin_container=container)
    agent = await add_host(client, admin)
    user = await signup(client)
    endpoint = await register(client, user, receiver.url, description="ci")
    assert endpoint["secret"].startswith("whsec_") and endpoint["event_types"] == []
    dispatch = container.webhook_service().dispatch_due
    env = await created(client, user, "train")
    await dispatch()  # one step at a time: the receiver sees them in order
    clock.advance(seconds=1)
    await agent.converge()
    await dispatch()
    clock.advance(seconds=1)
    assert (await client.post(f"{ENVS}/{env['id']}/stop", headers=user.headers)).status == 202
    await agent.converge()
    await dispatch()
    payloads = [verified(endpoint["secret"], got) for got in receiver.received]
    types = [p["type"] for p in payloads]
    assert types == ["environment.created", "environment.running", "environment.stopped"], types
    assert all(p["data"]["environment_id"] == env["id"] and p["data"]["workspace_id"] == user.personal_workspace_id for p in payloads)
    assert payloads[2]["data"]["previous_status"] == "stopping" and payloads[0]["timestamp"].endswith("Z")
    ids = [got.headers["webhook-id"] for got in receiver.received]
    assert len(set(ids)) == 3 and all(i.startswith("msg_") for i in ids)
    # A tampered body or another secret fails verification: the check above means something.
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(receiver.received[0].body + b" ", receiver.received[0].headers)
    other = await register(client, user, receiver.url)
    with pytest.raises(WebhookVerificationError):
        verified(other["secret"], receiver.received[0])
    log = await log_of(client, user, endpoint["id"])
    assert [d["status"] for d in log] == ["succeeded"] * 3 and {d["response_status"] for d in log} == {200}
    assert json.loads(log[-1]["request_body"])["type"] == "environment.created"


async def test_an_environment_stopped_for_idleness_sends_one_signed_webhook(wh, receiver, clock):
    client, container = wh
    container.autostop.add_kwargs(clock=clock)
    admin = await signup(client, admin_container=container)
    agent = await add_host(client, admin)
    plain_report = agent.report

    def idle_report() -> dict:  # every GPU at 0% utilisation
        report = plain_report()
        report["utilization"] = {g.uuid: 0 for g in agent.gpus}
        return report

    agent.report = idle_report
    user = await signup(client)
    endpoint = await register(client, user, receiver.url, event_types=["environment.stopped"])
    env = await created(client, user, "idle", idle_stop_minutes=1)
    await agent.converge()
    # The sweep reads only environments due by its clock (``autostop_due_at``: an idle
    # policy is due from the start, stamped by the server's real clock): no earlier.
    clock.advance(seconds=max(0.0, (utcnow() - clock.now()).total_seconds()))
    assert await container.autostop().sweep() == []  # idle from now on
    clock.advance(minutes=2)
    assert await container.autostop().sweep() == [env["id"]]
    await agent.converge()  # the host stops it: stopping → stopped
    await container.webhook_service().dispatch_due()
    [got] = receiver.received
    payload = verified(endpoint["secret"], got)
    assert payload["type"] == "environment.stopped" and payload["data"]["environment_id"] == env["id"]
    assert payload["data"]["previous_status"] == "stopping"  # (the idle reason is on the stopping step, in the event log)


async def test_event_type_filter_and_other_workspaces(wh, receiver):
    client, container = wh
    user, stranger = await signup(client), await signup(client)
    only_stopped = await register(client, user, receiver.url, event_types=["environment.stopped"])
    svc = container.webhook_service()
    assert await svc.publish(user.personal_workspace_id, "environment.created", {"x": 1}) == 0
    assert await svc.publish(stranger.personal_workspace_id, "environment.stopped", {"x": 1}) == 0
    assert await svc.publish(user.personal_workspace_id, "environment.stopped", {"x": 1}) == 1
    await svc.dispatch_due()
    assert [verified(only_stopped["secret"], g)["type"] for g in receiver.received] == ["environment.stopped"]


async def test_a_receiver_that_fails_then_succeeds_gets_the_same_webhook_id(wh, receiver, clock):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    receiver.script = [(500, {}), (502, {})]
    clock.advance(minutes=-3)  # all three attempts within the verifier's +-5 min of real time
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.failed", {"reason": "boom"})
    await svc.dispatch_due()
    assert len(receiver.received) == 1
    [d] = await log_of(client, user, endpoint["id"])
    assert (d["status"], d["attempts"], d["response_status"], d["response_body"]) == ("pending", 1, 500, "answer 500")
    # Second attempt after ~5 s (+-10% jitter): not before 4.5 s, surely by 5.5 s.
    clock.advance(seconds=4.4)
    await svc.dispatch_due()
    assert len(receiver.received) == 1
    clock.advance(seconds=1.2)
    await svc.dispatch_due()
    assert len(receiver.received) == 2
    # Third after ~5 min.
    clock.advance(seconds=269)
    await svc.dispatch_due()
    assert len(receiver.received) == 2
    clock.advance(seconds=62)
    await svc.dispatch_due()
    assert len(receiver.received) == 3
    assert len({g.headers["webhook-id"] for g in receiver.received}) == 1
    assert len({g.headers["webhook-timestamp"] for g in receiver.received}) == 3  # re-signed at each attempt
    for got in receiver.received:
        assert verified(endpoint["secret"], got)["type"] == "environment.failed"
    [d] = await log_of(client, user, endpoint["id"])
    assert (d["status"], d["attempts"], d["response_status"], d["next_attempt_at"]) == ("succeeded", 3, 200, None)
    # The endpoint's failure streak ended with the success.
    assert (await (await client.get(f"{HOOKS}/{endpoint['id']}", headers=user.headers)).json())["failing_since"] is None


async def test_gone_disables_the_endpoint(wh, receiver):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    receiver.script = [(410, {})]
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.deleted", {})
    await svc.dispatch_due()
    [d] = await log_of(client, user, endpoint["id"])
    assert (d["status"], d["response_status"], d["next_attempt_at"]) == ("failed", 410, None)
    got = await (await client.get(f"{HOOKS}/{endpoint['id']}", headers=user.headers)).json()
    assert got["enabled"] is False and "410" in got["disabled_reason"]
    assert await svc.publish(user.personal_workspace_id, "environment.deleted", {}) == 0
    # Re-enabled by an admin: events flow again.
    r = await client.patch(f"{HOOKS}/{endpoint['id']}", json={"enabled": True}, headers=user.headers)
    assert r.status == 200 and (await r.json())["disabled_reason"] == ""
    assert await svc.publish(user.personal_workspace_id, "environment.deleted", {}) == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(wh, receiver, clock, status):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    receiver.script = [(status, {"Retry-After": "120"})]
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.running", {})
    start = clock.now()
    await svc.dispatch_due()
    [d] = await log_of(client, user, endpoint["id"])
    assert d["response_status"] == status and d["next_attempt_at"] == (start + timedelta(seconds=120)).isoformat().replace("+00:00", "Z")
    clock.advance(seconds=60)  # the schedule alone would have retried after ~5 s
    await svc.dispatch_due()
    assert len(receiver.received) == 1
    clock.advance(seconds=61)
    await svc.dispatch_due()
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]


async def test_retry_after_is_ignored_on_other_statuses(wh, receiver, clock):
    client, container = wh
    user = await signup(client)
    await register(client, user, receiver.url)
    receiver.script = [(500, {"Retry-After": "3600"})]
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.running", {})
    await svc.dispatch_due()
    clock.advance(seconds=6)
    await svc.dispatch_due()
    assert len(receiver.received) == 2


async def test_gives_up_after_the_schedule_and_disables_an_endpoint_failing_for_five_days(wh, receiver, clock):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    receiver.script = [(500, {})] * 100
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.failed", {})
    for _ in range(12):  # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (+10%): 11 h steps cover each
        await svc.dispatch_due()
        clock.advance(hours=11)
    [d] = await log_of(client, user, endpoint["id"])
    assert (d["status"], d["attempts"]) == ("failed", 8) and len(receiver.received) == 8
    got = await (await client.get(f"{HOOKS}/{endpoint['id']}", headers=user.headers)).json()
    assert got["enabled"] is True and got["failing_since"] is not None  # ~5.5 days? no: 1 day of attempts
    clock.advance(days=4)
    await svc.publish(user.personal_workspace_id, "environment.failed", {})
    await svc.dispatch_due()
    got = await (await client.get(f"{HOOKS}/{endpoint['id']}", headers=user.headers)).json()
    assert got["enabled"] is False and got["disabled_reason"] == "failing for 5 days"


async def test_secret_rotation_sends_both_signatures_for_a_day(wh, receiver, clock):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    r = await client.post(f"{HOOKS}/{endpoint['id']}/rotate-secret", headers=user.headers)
    assert r.status == 200
    rotated = await r.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    r = await client.post(f"{HOOKS}/{endpoint['id']}/test", headers=user.headers)
    assert r.status == 200 and (await r.json())["status"] == "succeeded"
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verified(endpoint["secret"], got)["type"] == "webhook.test"  # receivers not yet updated
    assert verified(rotated["secret"], got)["type"] == "webhook.test"  # receivers already updated
    clock.advance(hours=24, seconds=1)
    await client.post(f"{HOOKS}/{endpoint['id']}/test", headers=user.headers)
    assert len(receiver.received[-1].headers["webhook-signature"].split(" ")) == 1


async def test_redeliver_sends_the_same_message_again(wh, receiver):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url)
    svc = container.webhook_service()
    await svc.publish(user.personal_workspace_id, "environment.stopped", {"n": 1})
    await svc.dispatch_due()
    [first] = await log_of(client, user, endpoint["id"])
    r = await client.post(f"{HOOKS}/{endpoint['id']}/deliveries/{first['id']}/redeliver", headers=user.headers)
    assert r.status == 202, await r.text()
    assert (await r.json())["message_id"] == first["message_id"]
    await svc.dispatch_due()
    assert [g.headers["webhook-id"] for g in receiver.received] == [first["message_id"]] * 2
    assert receiver.received[0].body == receiver.received[1].body


async def test_the_dispatcher_runs_by_itself(aiohttp_client, tmp_path, receiver):
    """With background work on, a published event is delivered without anyone calling dispatch."""
    container = build_container(make_settings(tmp_path, webhook_allow_cidrs="127.0.0.1/32"), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=True), cookie_jar=aiohttp.DummyCookieJar())
    user = await signup(client)
    await register(client, user, receiver.url)
    await container.webhook_service().publish(user.personal_workspace_id, "environment.running", {})
    for _ in range(300):
        if receiver.received:
            break
        await asyncio.sleep(0.1)
    assert len(receiver.received) == 1


# --- the API ------------------------------------------------------------------------------


async def test_crud_secret_shown_once_and_validation(wh, receiver):
    client, container = wh
    user = await signup(client)
    endpoint = await register(client, user, receiver.url, description="d", event_types=["environment.running"])
    url = f"{HOOKS}/{endpoint['id']}"
    got = await (await client.get(url, headers=user.headers)).json()
    assert "secret" not in got and got["description"] == "d" and got["event_types"] == ["environment.running"]
    listed = await (await client.get(HOOKS, params={"workspace_id": user.personal_workspace_id}, headers=user.headers)).json()
    assert [e["id"] for e in listed["items"]] == [endpoint["id"]] and "secret" not in listed["items"][0]
    r = await client.patch(url, json={"description": "new", "event_types": [], "enabled": False}, headers=user.headers)
    assert r.status == 200 and (await r.json())["enabled"] is False and "secret" not in await r.json()
    types = await (await client.get(f"{HOOKS}/event-types", headers=user.headers)).json()
    assert {"environment.created", "environment.stopped"} <= {t["type"] for t in types["items"]}
    ws = user.personal_workspace_id
    for body, code in (
        ({"workspace_id": ws, "url": "ftp://example.com/x"}, "invalid_url"),
        ({"workspace_id": ws, "url": "https://user:pw@example.com/x"}, "invalid_url"),
        ({"workspace_id": ws, "url": "https://example.com/x", "event_types": ["nope.nope"]}, "unknown_event_type"),
        ({"workspace_id": ws, "url": "http://localhost./x"}, "address_refused"),
        ({"workspace_id": ws, "url": "http://169.254.169.254/latest"}, "address_refused"),
        ({"workspace_id": ws, "url": "https://example.com/x", "secret": "mine"}, "validation_error"),
    ):
        r = await client.post(HOOKS, json=body, headers=user.headers)
        assert r.status == 422, (body, await r.text())
        assert (await r.json())["error"]["code"] == code, body
    assert (await client.delete(url, headers=user.headers)).status == 204
    assert (await client.get(url, headers=user.headers)).status == 404


async def test_another_tenants_endpoint_is_not_found(wh, receiver):
    client, container = wh
    owner, stranger, viewer = await signup(client), await signup(client), await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "t"}, headers=owner.headers)).json())["id"]
    await join_workspace(client, owner, ws, viewer, "viewer")
    r = await client.post(HOOKS, json={"workspace_id": ws, "url": receiver.url}, headers=owner.headers)
    endpoint = await r.json()
    await client.post(f"{HOOKS}/{endpoint['id']}/test", headers=owner.headers)
    [d] = await log_of(client, owner, endpoint["id"])
    mine = await register(client, stranger, receiver.url)
    url = f"{HOOKS}/{endpoint['id']}"
    for method, path, body in (("GET", url, None), ("PATCH", url, {"description": "x"}), ("DELETE", url, None),
                               ("POST", url + "/rotate-secret", None), ("POST", url + "/test", None),
                               ("GET", url + "/deliveries", None), ("POST", url + f"/deliveries/{d['id']}/redeliver", None)):
        r = await client.request(method, path, json=body, headers=stranger.headers)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found", (method, path)
        r = await client.request(method, path, json=body, headers=viewer.headers)
        assert r.status == 403, (method, path)  # a member sees the workspace, but endpoints are for admins
    r = await client.get(HOOKS, params={"workspace_id": ws}, headers=stranger.headers)
    assert r.status == 404
    r = await client.post(HOOKS, json={"workspace_id": ws, "url": receiver.url}, headers=stranger.headers)
    assert r.status == 404
    # A delivery of one's own endpoint cannot be redelivered through another's URL, and vice versa.
    r = await client.post(f"{HOOKS}/{mine['id']}/deliveries/{d['id']}/redeliver", headers=stranger.headers)
    assert r.status == 404
    assert (await client.get(url, headers=owner.headers)).status == 200
