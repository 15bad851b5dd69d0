"""Ticket repository contract: memory, SQLite and PostgreSQL (migrated by Alembic) behave alike."""

from __future__ import annotations

from dataclasses import replace

import pytest

from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.support.memory import InMemoryTicketRepository
from remotegpu.adapters.support.sql import SqlTicketRepository
from remotegpu.domain.support.models import Attachment, Comment, Priority, Ticket, TicketCategory, TicketStatus
from tests.contract.conftest import sql_sessions
from tests.contract.test_repositories import add_users, at, make_user


@pytest.fixture
async def repo(repo_backend, tmp_path):
    """(ticket repository, two users' ids) over one empty database."""
    name, pg = repo_backend
    users = make_user(1), make_user(2), make_user(3)
    if name == "memory":
        store = InMemoryStore()
        await add_users(lambda: InMemoryUnitOfWork(store), *users)
        yield InMemoryTicketRepository(), [u.id for u in users]
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        await add_users(lambda: SqlUnitOfWork(sessions), *users)
        yield SqlTicketRepository(sessions), [u.id for u in users]


def _ticket(n: int, requester: str, **kw) -> Ticket:
    values = dict(id=f"70000000-0000-0000-0000-{n:012d}", requester_id=requester, subject=f"s{n}", description="d",
                  category=TicketCategory.BUG, priority=Priority.NORMAL, created_at=at(n), updated_at=at(n),
                  sla_running_since=at(n))
    return Ticket(**{**values, **kw})


async def test_round_trip_and_optimistic_saves(repo):
    tickets, (u1, u2, _) = repo
    ticket = _ticket(1, u1, workspace_id="w", environment_id="e", sla_alerts={"first_response.warning"})
    await tickets.add(ticket)
    got = await tickets.get(ticket.id)
    assert got == replace(ticket, version=1)
    assert await tickets.get("nope") is None

    first, second = await tickets.get(ticket.id), await tickets.get(ticket.id)
    first.move(TicketStatus.PENDING, at(10), 540.5)
    first.sla_alerts.add("first_response.breach")
    note = Comment("c1", ticket.id, u2, "internal", public=False, by_staff=True, created_at=at(10))
    reply = Comment("c2", ticket.id, u2, "public", public=True, by_staff=True, created_at=at(11))
    assert await tickets.save(first, [note, reply]) is True and first.version == 2
    # The second reader's copy is stale: not written, nor its comment.
    second.priority = Priority.URGENT
    assert await tickets.save(second, [Comment("c3", ticket.id, u1, "lost", True, False, at(12))]) is False
    stored = await tickets.get(ticket.id)
    assert stored.status is TicketStatus.PENDING and stored.priority is Priority.NORMAL and stored.version == 2
    assert stored.sla_elapsed == 540.5 and stored.sla_running_since is None and stored.pending_since == at(10)
    assert stored.sla_alerts == {"first_response.warning", "first_response.breach"}
    assert [c.id for c in await tickets.comments(ticket.id, include_internal=True)] == ["c1", "c2"]
    assert [c.id for c in await tickets.comments(ticket.id, include_internal=False)] == ["c2"]


async def test_lists_filter_and_page(repo):
    tickets, (u1, u2, u3) = repo
    await tickets.add(_ticket(1, u1))
    await tickets.add(_ticket(2, u1, status=TicketStatus.PENDING, assignee_id=u3))
    await tickets.add(_ticket(3, u2, priority=Priority.URGENT, status=TicketStatus.SOLVED))
    items, total = await tickets.list(requester_id=u1)
    assert total == 2 and [x.subject for x in items] == ["s2", "s1"]  # most recently updated first
    items, total = await tickets.list(statuses=[TicketStatus.PENDING, TicketStatus.SOLVED], limit=1, offset=1)
    assert total == 2 and [x.subject for x in items] == ["s2"]
    assert [x.subject for x in (await tickets.list(assignee_id=u3))[0]] == ["s2"]
    assert [x.subject for x in (await tickets.list(unassigned=True))[0]] == ["s3", "s1"]
    assert [x.subject for x in (await tickets.list(priority=Priority.URGENT))[0]] == ["s3"]
    assert [x.subject for x in await tickets.in_statuses([TicketStatus.NEW, TicketStatus.SOLVED], 10)] == ["s1", "s3"]  # by id
    first = await tickets.in_statuses([TicketStatus.NEW, TicketStatus.PENDING, TicketStatus.SOLVED], 2)
    assert [x.subject for x in first] == ["s1", "s2"]
    assert [x.subject for x in await tickets.in_statuses([TicketStatus.NEW, TicketStatus.PENDING, TicketStatus.SOLVED], 2,
                                                         first[-1].id)] == ["s3"]


async def test_the_support_team(repo):
    tickets, (u1, u2, u3) = repo
    assert await tickets.agents() == [] and not await tickets.is_agent(u1)
    await tickets.add_agent(u2, u1, at(1))
    await tickets.add_agent(u1, u1, at(2))
    await tickets.add_agent(u2, u1, at(3))  # again: no error, no duplicate
    assert await tickets.agents() == [u2, u1] and await tickets.is_agent(u2)
    assert await tickets.remove_agent(u2) is True and await tickets.remove_agent(u2) is False
    assert await tickets.agents() == [u1]


async def test_attachments_and_retention_deletes(repo):
    tickets, (u1, u2, _) = repo
    keep, old = _ticket(21, u1), _ticket(22, u1)
    for t in (keep, old):
        await tickets.add(t)
    files = [Attachment(f"a{n}", old.id, comment, u, f"f{n}.txt", "text/plain", 10 + n, "0" * 64, public, at(30 + n))
             for n, comment, u, public in ((1, None, u1, True), (2, "c9", u2, False))]
    files.append(Attachment("a3", keep.id, None, u1, "k.png", "image/png", 5, "1" * 64, True, at(40)))
    for a in files:
        await tickets.add_attachment(a)
    assert await tickets.attachments(old.id, include_internal=True) == files[:2]
    assert await tickets.attachments(old.id, include_internal=False) == files[:1]
    assert await tickets.attachment(old.id, "a2") == files[1] and await tickets.attachment(keep.id, "a2") is None
    for t, closed in ((keep, at(90)), (old, at(50))):
        got = await tickets.get(t.id)
        got.status, got.closed_at = TicketStatus.CLOSED, closed
        assert await tickets.save(got, [Comment(f"c-{t.id[-6:]}", t.id, u1, "x", True, False, at(45))])
    assert [t.id for t in await tickets.closed_before(at(60), 10)] == [old.id]
    await tickets.delete(old.id)
    assert await tickets.get(old.id) is None and await tickets.attachments(old.id, include_internal=True) == []
    assert await tickets.comments(old.id, include_internal=True) == []
    assert [a.id for a in await tickets.attachments(keep.id, include_internal=True)] == ["a3"]
    assert len(await tickets.comments(keep.id, include_internal=True)) == 1
