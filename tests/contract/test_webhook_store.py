"""Webhook store contract: memory, SQLite and PostgreSQL (migrated by Alembic) behave alike."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from remotegpu.adapters.security.sealer import AesGcmSealer
from remotegpu.adapters.db import tables as t
from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.webhooks.memory_store import InMemoryWebhookStore
from remotegpu.adapters.webhooks.sql_store import SqlWebhookStore
from remotegpu.domain.webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint
from tests.contract.conftest import sql_sessions
from tests.contract.test_repositories import add_users, at, make_user, make_workspace


@pytest.fixture
async def stores(repo_backend, tmp_path):
    """(unit-of-work factory, webhook store, engine or None) over one empty database."""
    name, pg = repo_backend
    if name == "memory":
        store = InMemoryStore()
        yield (lambda: InMemoryUnitOfWork(store)), InMemoryWebhookStore(), None
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        yield (lambda: SqlUnitOfWork(sessions)), SqlWebhookStore(sessions, AesGcmSealer("contract-secret-0123456789abcdef")), sessions.kw["bind"]


async def _workspace(uow_factory) -> str:
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ws = make_workspace(1, owner)
    async with uow_factory() as uow:
        await uow.workspaces.add(ws)
        await uow.commit()
    return ws.id


def _endpoint(n: int, ws: str) -> WebhookEndpoint:
    return WebhookEndpoint(f"50000000-0000-0000-0000-{n:012d}", ws, f"https://hooks.example.com/{n}", f"whsec_c2VjcmV0{n}",
                           "u", at(n), at(n), description=f"d{n}", event_types=["environment.running"])


def _delivery(n: int, endpoint: WebhookEndpoint, due: float | None) -> Delivery:
    return Delivery(f"60000000-0000-0000-0000-{n:012d}", endpoint.id, endpoint.workspace_id, f"msg_{n}", "environment.running",
                    '{"n":%d}' % n, created_at=at(n), next_attempt_at=at(due) if due is not None else None)


async def test_endpoints_round_trip_with_sealed_secrets(stores):
    uow_factory, store, engine = stores
    ws = await _workspace(uow_factory)
    a, b = _endpoint(1, ws), _endpoint(2, ws)
    await store.add_endpoint(a)
    await store.add_endpoint(b)
    assert await store.get_endpoint(a.id) == a and await store.get_endpoint("nope") is None
    assert [e.id for e in await store.list_endpoints(ws)] == [a.id, b.id] and await store.list_endpoints("other") == []
    a.rotate("whsec_bmV3", at(5))
    a.event_types, a.enabled = [], False
    await store.update_endpoint(a)
    got = await store.get_endpoint(a.id)
    assert got == a and got.signing_secrets(at(6)) == ["whsec_bmV3", "whsec_c2VjcmV01"]
    if engine is not None:  # at rest, no secret in clear
        async with engine.connect() as conn:
            row = (await conn.execute(select(t.webhook_endpoints).where(t.webhook_endpoints.c.id == a.id))).one()
        assert "bmV3" not in row.secret_sealed and "c2VjcmV0" not in row.previous_secret_sealed
    # Failure streak: the first failure's time is kept; success clears it; disabling is targeted.
    assert await store.mark_endpoint_failed(b.id, at(10)) == at(10)
    assert await store.mark_endpoint_failed(b.id, at(20)) == at(10)
    assert await store.mark_endpoint_failed("nope", at(20)) is None
    await store.mark_endpoint_succeeded(b.id)
    assert (await store.get_endpoint(b.id)).failing_since is None
    await store.disable_endpoint(b.id, "gone", at(30))
    got = await store.get_endpoint(b.id)
    assert (got.enabled, got.disabled_reason, got.description) == (False, "gone", "d2")
    d = _delivery(1, b, 0)
    await store.add_deliveries([d])
    await store.delete_endpoint(b.id)
    assert await store.get_endpoint(b.id) is None and await store.get_delivery(d.id) is None


async def test_claim_due_leases_and_the_log_pages(stores):
    uow_factory, store, _ = stores
    ws = await _workspace(uow_factory)
    e = _endpoint(1, ws)
    await store.add_endpoint(e)
    due = [_delivery(n, e, due=n) for n in range(1, 6)]
    later, done = _delivery(6, e, due=100), replace(_delivery(7, e, due=1), status=DeliveryStatus.SUCCEEDED)
    await store.add_deliveries([*due, later, done])
    first = await store.claim_due(at(50), 3, timedelta(seconds=60))
    assert [d.id for d in first] == [d.id for d in due[:3]]  # oldest due first, at most the limit
    second = await store.claim_due(at(50), 10, timedelta(seconds=60))
    assert [d.id for d in second] == [d.id for d in due[3:]]  # the leased ones are not handed out again
    assert await store.claim_due(at(50), 10, timedelta(seconds=60)) == []
    again = await store.claim_due(at(111), 10, timedelta(seconds=60))  # lease over (crashed dispatcher): back
    assert {d.id for d in again} == {d.id for d in [*due, later]}
    d = again[0]
    d.status, d.attempts, d.response_status, d.response_body, d.error = DeliveryStatus.FAILED, 3, 500, "x", "HTTP 500"
    d.next_attempt_at, d.last_attempt_at = None, at(111)
    await store.update_delivery(d)
    assert await store.get_delivery(d.id) == d
    others = again[1:3]
    for n, other in enumerate(others):
        other.status, other.attempts, other.response_status, other.next_attempt_at = DeliveryStatus.SUCCEEDED, 1 + n, 204, None
    await store.update_deliveries(others)  # the dispatcher's batch write
    assert [await store.get_delivery(o.id) for o in others] == others
    page, total = await store.list_deliveries(e.id, 2, 0)
    assert total == 7 and [p.id for p in page] == [done.id, later.id]  # newest first
    assert [p.id for p in (await store.list_deliveries(e.id, 2, 6))[0]] == [due[0].id]
    # Retention: finished deliveries created before the cut go; pending ones stay whatever their age.
    assert await store.purge_finished(at(3)) == 2  # `done` (created at 7) is newer; d and others[0] are older
    assert {p.id for p in (await store.list_deliveries(e.id, 10, 0))[0]} == {x.id for x in [*due, later, done]} - {d.id, others[0].id}


async def test_concurrent_dispatchers_never_claim_the_same_delivery(stores):
    uow_factory, store, _ = stores
    ws = await _workspace(uow_factory)
    e = _endpoint(1, ws)
    await store.add_endpoint(e)
    await store.add_deliveries([_delivery(n, e, due=1) for n in range(1, 201)])
    batches = await asyncio.gather(*(store.claim_due(at(10), 30, timedelta(seconds=60)) for _ in range(10)))
    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids))
    rest = await store.claim_due(at(10), 500, timedelta(seconds=60))
    assert len(ids) + len(rest) == 200


async def test_deliveries_between_is_the_replay_window(stores):
    uow_factory, store, _ = stores
    ws = await _workspace(uow_factory)
    e, other = _endpoint(1, ws), _endpoint(2, ws)
    await store.add_endpoint(e)
    await store.add_endpoint(other)
    mine = [_delivery(n, e, due=n) for n in range(1, 6)]
    await store.add_deliveries([*mine, _delivery(9, other, due=3)])
    got = await store.deliveries_between(e.id, mine[1].created_at, mine[4].created_at, 10)
    assert [d.id for d in got] == [d.id for d in mine[1:4]]  # [since, until), oldest first, this endpoint only
    assert [d.id for d in await store.deliveries_between(e.id, mine[0].created_at, mine[4].created_at, 2)] == [d.id for d in mine[:2]]
