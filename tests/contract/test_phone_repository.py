"""Phone numbers and the SMS send log: memory, SQLite and PostgreSQL (migrated) behave alike,
and workers racing for a number's last slot never send more than the rules allow."""

from __future__ import annotations

import asyncio

import pytest

from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.notifications.phones import InMemoryPhoneRepository, SqlPhoneRepository
from remotegpu.application.notifications.phones import PhoneService, SmsLimited
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.notifications.sms import PhoneNumber
from tests.contract.conftest import sql_sessions
from tests.contract.test_repositories import add_users, at, make_user


@pytest.fixture
async def phones(repo_backend, tmp_path):
    name, pg = repo_backend
    user = make_user(1)
    if name == "memory":
        store = InMemoryStore()
        await add_users(lambda: InMemoryUnitOfWork(store), user)
        yield InMemoryPhoneRepository(), user.id
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        await add_users(lambda: SqlUnitOfWork(sessions), user)
        yield SqlPhoneRepository(sessions), user.id


async def test_phone_round_trip_and_the_send_log(phones):
    repo, user_id = phones
    assert await repo.get(user_id) is None
    phone = PhoneNumber(user_id, pending_number="+8613800138000", code_hash="h" * 64, code_expires_at=at(10), updated_at=at(1))
    await repo.save(phone)
    assert await repo.get(user_id) == phone
    phone.number, phone.verified_at, phone.pending_number, phone.code_hash = "+8613800138000", at(2), None, None
    await repo.save(phone)
    assert await repo.get(user_id) == phone
    first = await repo.record_send("+8613800138000", "notify", at(1))
    await repo.record_send("+8613800138000", "notify", at(2))
    await repo.record_send("+8613800138000", "verify", at(2))
    assert await repo.sends_since("+8613800138000", "notify", at(0)) == [at(1), at(2)]
    await repo.cancel_send(first)
    assert await repo.sends_since("+8613800138000", "notify", at(0)) == [at(2)]
    assert await repo.delete(user_id) is True and await repo.get(user_id) is None and await repo.delete(user_id) is False


class _Sender:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message) -> None:
        await asyncio.sleep(0)
        self.sent += 1


async def test_racing_workers_never_exceed_a_numbers_limit(phones):
    repo, _ = phones
    sender, clock = _Sender(), FrozenClock(at(0))
    service = PhoneService(repo, clock, sender, b"k")

    async def one(n: int) -> bool:
        try:
            await service.send_limited("+8613800138000", "notify", {"title": "x"}, f"k{n}")
            return True
        except SmsLimited:
            return False

    results = await asyncio.gather(*(one(n) for n in range(8)))
    assert sender.sent == sum(results) <= 1  # 1 a minute, whoever wins
    assert len(await repo.sends_since("+8613800138000", "notify", at(-1))) == sender.sent  # refused ones taken back
    clock.advance(minutes=1, seconds=1)
    assert await one(99) is True and sender.sent == sum(results) + 1
