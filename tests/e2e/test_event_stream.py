"""GET /api/v1/events/stream: environment changes pushed as server-sent events.

The fake agent of test_environments_api plays the host; the stream must carry each
status change of the caller's environments as it is committed — and nothing of
another tenant's.
"""

from __future__ import annotations

import asyncio
import json

from tests.e2e.test_environments_api import ENVS, admin_and_host, created

STREAM = "/api/v1/events/stream"


class EventReader:
    def __init__(self, response):
        self.response = response

    async def next_event(self, timeout: float = 5.0) -> tuple[str, dict]:
        """The next ``event:``/``data:`` pair (comments and pings skipped)."""
        async def read() -> tuple[str, dict]:
            event, data = "message", None
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:].strip())
                elif line == "" and data is not None:
                    return event, data

        return await asyncio.wait_for(read(), timeout)

    async def statuses_of(self, env_id: str, until: str, timeout: float = 5.0) -> list[str]:
        seen: list[str] = []
        while until not in seen:
            event, data = await self.next_event(timeout)
            assert event == "environment" and data["type"] == "environment"
            if data["environment"]["id"] == env_id:
                seen.append(data["environment"]["status"])
        return seen


async def open_stream(client, account) -> EventReader:
    r = await client.get(STREAM, headers=account.headers)
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert (await r.content.readline()).startswith(b"retry:")
    return EventReader(r)


async def test_stream_pushes_each_status_change_of_my_environments(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    alice = await new_account()
    stream = await open_stream(client, alice)

    env = await created(client, alice, "train")
    assert await stream.statuses_of(env["id"], until="starting") == ["starting"]

    await agent.converge()
    event, data = await stream.next_event()
    pushed = data["environment"]
    assert (pushed["id"], pushed["status"]) == (env["id"], "running")
    assert pushed["gpus"] and pushed["workspace_id"] == alice.personal_workspace_id
    assert "jupyter_token" not in json.dumps(data)

    r = await client.post(f"{ENVS}/{env['id']}/stop", headers=alice.headers)
    assert r.status == 202
    assert await stream.statuses_of(env["id"], until="stopping") == ["stopping"]
    await agent.converge()
    assert await stream.statuses_of(env["id"], until="stopped") == ["stopped"]

    r = await client.delete(f"{ENVS}/{env['id']}", headers=alice.headers)
    assert r.status in (200, 202, 204)
    await agent.converge()
    assert await stream.statuses_of(env["id"], until="deleted") == ["deleting", "deleted"]
    stream.response.close()


async def test_heartbeats_that_change_nothing_push_nothing(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    alice = await new_account()
    env = await created(client, alice, "quiet")
    await agent.converge()
    stream = await open_stream(client, alice)
    for _ in range(3):
        await agent.beat()  # the server re-saves every environment of the host each beat
    marker = await created(client, alice, "marker")  # the next event must be this one
    event, data = await stream.next_event()
    assert data["environment"]["id"] == marker["id"] != env["id"]
    stream.response.close()


async def test_another_tenants_changes_never_reach_my_stream(client, new_account):
    admin, agent = await admin_and_host(client, new_account)
    alice, mallory = await new_account(), await new_account()
    spy = await open_stream(client, mallory)
    secret = await created(client, alice, "alices")
    await agent.converge()
    mine = await created(client, mallory, "mallorys")
    event, data = await spy.next_event()
    assert data["environment"]["id"] == mine["id"]  # alice's two changes were skipped
    assert secret["id"] not in json.dumps(data)
    spy.response.close()


async def test_stream_needs_authentication(client):
    r = await client.get(STREAM)
    assert r.status == 401
    body = await r.json()
    assert body["error"]["code"]


async def until_closed(stream: EventReader) -> None:
    while await stream.response.content.readline():
        pass


async def test_disabling_the_account_ends_its_open_stream(client, new_account):
    """Within the re-check interval (2.5 s by default), not at the next reconnect."""
    admin = await new_account(admin=True)
    bob = await new_account()
    stream = await open_stream(client, bob)
    r = await client.patch(f"/api/v1/users/{bob.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status == 200
    await asyncio.wait_for(until_closed(stream), 15)  # the server ended it


async def test_a_password_change_ends_the_open_streams(client, new_account):
    bob = await new_account()
    stream = await open_stream(client, bob)
    r = await client.post("/api/v1/users/me/password", json={"current_password": bob.password, "new_password": "another long password"},
                          headers=bob.headers)
    assert r.status in (200, 204), await r.text()
    await asyncio.wait_for(until_closed(stream), 15)


async def test_revoking_the_api_token_ends_the_stream_it_opened(client, new_account):
    bob = await new_account()
    r = await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=bob.headers)
    assert r.status == 201, await r.text()
    created_token = await r.json()
    by_token = type(bob)(bob.id, bob.username, bob.password, created_token["token"], bob.refresh_token, bob.personal_workspace_id)
    stream = await open_stream(client, by_token)
    other = await open_stream(client, bob)  # the same user's access-token stream stays
    r = await client.delete(f"/api/v1/users/me/tokens/{created_token['id']}", headers=bob.headers)
    assert r.status == 204
    await asyncio.wait_for(until_closed(stream), 15)
    assert not other.response.content.at_eof()
    other.response.close()


async def test_a_user_may_hold_a_bounded_number_of_streams(client, new_account):
    """Eight by default (REMOTEGPU_MAX_EVENT_STREAMS_PER_USER); one more is 429, and a
    closed one frees its place. Other users are not affected."""
    bob, alice = await new_account(), await new_account()
    streams = [await open_stream(client, bob) for _ in range(8)]
    r = await client.get(STREAM, headers=bob.headers)
    assert r.status == 429 and (await r.json())["error"]["code"] == "too_many_streams"
    mine = await open_stream(client, alice)
    streams[0].response.close()
    for _ in range(100):  # the server notices the closed stream at its next write or ping
        r = await client.get(STREAM, headers=bob.headers)
        if r.status == 200:
            r.close()
            break
        assert r.status == 429
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("a closed stream did not free its place")
    for s in [*streams[1:], mine]:
        s.response.close()


async def test_queue_positions_moved_by_another_tenant_are_pushed(client, new_account, monkeypatch):
    from remotegpu.application.environments import watch

    monkeypatch.setattr(watch, "QUEUE_REFRESH_SECONDS", 0.0)
    admin, agent = await admin_and_host(client, new_account)  # 4 GPUs
    alice, bob = await new_account(), await new_account()
    await created(client, alice, "big", gpu_count=4)
    bobs = await created(client, bob, "bobs-wait")
    alices = await created(client, alice, "alices-wait")
    assert (bobs["queue_position"], alices["queue_position"]) == (1, 2)
    stream = await open_stream(client, alice)

    r = await client.post(f"{ENVS}/{bobs['id']}/stop", headers=bob.headers)  # leaves the queue
    assert r.status == 202
    event, data = await stream.next_event()
    pushed = data["environment"]
    assert (pushed["id"], pushed["status"], pushed["queue_position"]) == (alices["id"], "queued", 1)
    assert bobs["id"] not in json.dumps(data)  # bob's environment itself stays invisible
    stream.response.close()
