"""What only the in-memory unit of work needs proving (SQL gets it from the database)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def user(n: int, email: str | None = None) -> User:
    return User(f"u{n}", f"user{n}", email or f"u{n}@example.com", "hash", NOW)


async def test_interleaved_commits_of_different_rows_both_survive():
    store = InMemoryStore()
    first, second = InMemoryUnitOfWork(store), InMemoryUnitOfWork(store)
    async with first, second:
        await first.users.add(user(1))
        await second.users.add(user(2))
        await first.commit()
        await second.commit()
    async with InMemoryUnitOfWork(store) as uow:
        assert await uow.users.count() == 2


async def test_a_race_on_a_unique_value_is_caught_at_commit():
    store = InMemoryStore()
    first, second = InMemoryUnitOfWork(store), InMemoryUnitOfWork(store)
    async with first, second:
        await first.users.add(user(1, email="same@example.com"))
        await second.users.add(user(2, email="same@example.com"))
        await first.commit()
        with pytest.raises(Conflict):
            await second.commit()
    async with InMemoryUnitOfWork(store) as uow:
        assert [u.id for u in (await uow.users.list(search=None, limit=10, offset=0))[0]] == ["u1"]


async def test_a_unit_of_work_can_be_entered_again_after_commit():
    store = InMemoryStore()
    uow = InMemoryUnitOfWork(store)
    async with uow:
        await uow.users.add(user(1))
        await uow.commit()
        await uow.users.add(user(2))  # after commit, then left without commit: discarded
    async with uow:
        assert await uow.users.get("u1") is not None and await uow.users.get("u2") is None
