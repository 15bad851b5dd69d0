"""gpu-types' prices are kept with the change epoch, never past their truth: a kept answer
ends when the next effective-dated price takes effect, when a price is set here, and
(SQL: migration 0030) when any process writes a price, which moves the epoch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remotegpu.entrypoints.containers import build_container, close_container
from tests.integration.test_billing_lifecycle import MODEL, T0, _world


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def world(request, tmp_path):
    w = await _world(request.param, tmp_path)
    w.kind = request.param
    yield w
    await close_container(w.container)


async def test_prices_are_kept_per_epoch_until_the_next_price_or_a_write(world):
    admin = await world.user("root", admin=True)
    await world.add_host()
    billing, envs = world.container.billing_service(), world.container.environment_service()
    await billing.set_price(admin, "gpu", MODEL, 1000, None)
    await billing.set_price(admin, "gpu", MODEL, 2000, T0 + timedelta(hours=1))  # announced for later

    epoch, types, _ = await envs.capacity(1, 1, 1)
    prices = await billing.hourly_prices(epoch)
    assert prices == {MODEL: 1000} and [t.model for t in types] == [MODEL]
    assert await billing.hourly_prices(epoch) is prices  # kept

    # The announced price takes effect: not a moment of the old one after it.
    world.clock.advance(minutes=59, seconds=59)
    assert await billing.hourly_prices((await envs.capacity(1, 1, 1))[0]) is prices
    world.clock.advance(seconds=1)
    assert await billing.hourly_prices((await envs.capacity(1, 1, 1))[0]) == {MODEL: 2000}

    # A price set here counts at once.
    world.clock.advance(minutes=1)
    assert await billing.hourly_prices((await envs.capacity(1, 1, 1))[0]) == {MODEL: 2000}
    await billing.set_price(admin, "gpu", MODEL, 3000, None)
    assert await billing.hourly_prices((await envs.capacity(1, 1, 1))[0]) == {MODEL: 3000}


async def test_requests_of_one_new_epoch_share_one_price_read(world):
    """After a change, the 50 requests a busy console sends at once wait for one read of
    the prices, not 50 (each a transaction: past the pool's size, new connections)."""
    import asyncio

    admin = await world.user("root", admin=True)
    billing, envs = world.container.billing_service(), world.container.environment_service()
    await billing.set_price(admin, "gpu", MODEL, 1000, None)
    epoch = (await envs.capacity(1, 1, 1))[0]
    reads = 0
    transaction = billing.store.transaction

    def counted():
        nonlocal reads
        reads += 1
        return transaction()

    billing.store.transaction = counted
    try:
        answers = await asyncio.gather(*(billing.hourly_prices(epoch) for _ in range(50)))
    finally:
        del billing.store.transaction
    assert reads == 1 and all(a == {MODEL: 1000} for a in answers)


async def test_a_price_written_by_another_process_moves_the_epoch(world, tmp_path):
    if world.kind == "memory":
        pytest.skip("one process only: set_price drops what it kept (the test above)")
    admin = await world.user("root", admin=True)
    billing, envs = world.container.billing_service(), world.container.environment_service()
    await billing.set_price(admin, "gpu", MODEL, 1000, None)
    before = (await envs.capacity(1, 1, 1))[0]
    assert await billing.hourly_prices(before) == {MODEL: 1000}

    world.clock.advance(minutes=1)  # (two prices from the same second: which one counts is billing's rule)
    assert await billing.hourly_prices((await envs.capacity(1, 1, 1))[0]) == {MODEL: 1000}
    # Another server process on the same database: its own container, its own caches.
    other = build_container(world.container.settings(), persistence="sql")
    other.clock.override(world.container.clock)
    try:
        await other.billing_service().set_price(admin, "gpu", MODEL, 1500, None)
    finally:
        await close_container(other)
    after = (await envs.capacity(1, 1, 1))[0]
    assert after > before
    assert await billing.hourly_prices(after) == {MODEL: 1500}
