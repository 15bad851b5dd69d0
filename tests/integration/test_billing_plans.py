"""Plans through the real use cases (in-memory store, SQLite, PostgreSQL): a purchase charges
once; the subscriber's reserved GPUs are not handed to another workspace (its request
queues) while the subscriber's own environment starts and runs unmetered; a cancellation
refunds the unused part pro rata and metering resumes from that second; auto-renewal
charges the next term, and without money the plan expires."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remotegpu.application.environments.service import CreateRequest
from remotegpu.domain.billing.money import rate
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.shared.errors import Conflict, NotFound
from tests.integration.test_billing_lifecycle import MODEL, world  # noqa: F401 - the fixture

MONTH_PRICE = 100_000  # per GPU


async def _setup(world):
    admin = await world.user("root", admin=True)
    bob, alice = await world.user("bob"), await world.user("alice")
    bob_ws, alice_ws = await world.personal_ws(bob), await world.personal_ws(alice)
    billing = world.container.billing_service()
    for kind, model, price in (("gpu", MODEL, 3600), ("gpu_month", MODEL, MONTH_PRICE)):
        await billing.set_price(admin, kind, model, price, None)
    await billing.post(admin, bob_ws, "topup", 250_000, "transfer", reference="bob-1")
    await billing.post(admin, alice_ws, "topup", 100_000, "transfer", reference="alice-1")
    host = await world.add_host(spec=f"4x{MODEL}")
    return admin, bob, alice, bob_ws, alice_ws, billing, host


def _gpu_env(ws, name, n):
    return CreateRequest(ws, name, gpu_count=n, gpu_model=MODEL, cpu_cores=1, memory_gib=1, disk_gib=1)


async def test_plan_reserves_gpus_is_not_metered_and_refunds_pro_rata(world):
    admin, bob, alice, bob_ws, alice_ws, billing, host = await _setup(world)
    plans = world.container.plan_service()
    metering = world.container.metering()
    envs = world.envs

    with pytest.raises(Conflict) as poor:
        await plans.purchase(bob, bob_ws, MODEL, 3, "month")  # 300,000 > 250,000
    assert poor.value.code == "insufficient_funds"
    with pytest.raises(NotFound):  # not alice's workspace
        await plans.purchase(alice, bob_ws, MODEL, 1, "month")
    plan = await plans.purchase(bob, bob_ws, MODEL, 2, "month")
    assert plan.price == 2 * MONTH_PRICE and plan.status == "active"
    entries, _ = await billing.ledger(bob, bob_ws, limit=50, offset=0)
    assert [e.amount for e in entries if e.kind.value == "plan"] == [-200_000]

    # Another workspace may not take the reserved GPUs: 3 of 4 would leave 1 < 2 reserved.
    big = (await envs.create(alice, _gpu_env(alice_ws, "big", 3))).env
    await host.beat_all_running()
    big = (await envs.get(alice, big.id)).env
    assert big.status is EnvStatus.QUEUED and "reserved" in big.status_message
    small = (await envs.create(alice, _gpu_env(alice_ws, "small", 2))).env  # the 2 unreserved ones: fine
    mine = (await envs.create(bob, _gpu_env(bob_ws, "mine", 2))).env  # the subscriber gets its reservation
    await host.beat_all_running()
    assert (await envs.get(alice, small.id)).env.status is EnvStatus.RUNNING
    assert (await envs.get(bob, mine.id)).env.status is EnvStatus.RUNNING
    assert (await envs.get(alice, big.id)).env.status is EnvStatus.QUEUED

    # An hour: bob's GPUs are covered by the plan, alice's are metered.
    world.clock.advance(seconds=3600)
    await metering.run()
    bob_usage = await billing.usage(bob, bob_ws, start=None, end=None, group_by="kind")
    assert {g["key"]: g["amount"] for g in bob_usage["groups"]}.get("gpu", 0) == 0
    alice_usage = await billing.usage(alice, alice_ws, start=None, end=None, group_by="kind")
    assert {g["key"]: g["amount"] for g in alice_usage["groups"]}["gpu"] == rate(2, 3600, 3600, 3600)

    # Cancel: the unused part of the term comes back (pro rata, rounded down); from that
    # second on bob's GPUs are metered like anyone's, and the reservation is gone.
    term = int((plan.ends_at - plan.term_started_at).total_seconds())
    cancelled, refund = await plans.cancel(bob, plan.id)
    assert cancelled.status == "cancelled"
    assert refund == 200_000 * (term - 3600) // term
    world.clock.advance(seconds=100)
    await metering.run()
    bob_usage = await billing.usage(bob, bob_ws, start=None, end=None, group_by="kind")
    assert {g["key"]: g["amount"] for g in bob_usage["groups"]}["gpu"] == rate(2, 3600, 100, 3600)
    entries, _ = await billing.ledger(bob, bob_ws, limit=50, offset=0)
    assert [e.amount for e in entries if e.kind.value == "refund"] == [refund]
    with pytest.raises(Conflict):
        await plans.cancel(bob, plan.id)  # once


async def test_auto_renewal_charges_the_next_term_and_without_money_the_plan_expires(world):
    admin, bob, alice, bob_ws, alice_ws, billing, host = await _setup(world)
    plans = world.container.plan_service()
    metering = world.container.metering()
    plan = await plans.purchase(bob, bob_ws, MODEL, 1, "month", auto_renew=True)  # 100,000 of 250,000
    world.clock._now = plan.ends_at + timedelta(seconds=5)
    await metering.run()
    renewed = (await plans.list(bob, bob_ws))[0]
    assert renewed.status == "active" and renewed.terms == 2 and renewed.ends_at > world.clock.now()
    entries, _ = await billing.ledger(bob, bob_ws, limit=50, offset=0)
    assert sorted(e.amount for e in entries if e.kind.value == "plan") == [-100_000, -100_000]
    await billing.post(admin, bob_ws, "adjustment", -50_000, "leave less than a term")  # 0 left
    world.clock._now = renewed.ends_at + timedelta(seconds=5)
    await metering.run()
    expired = (await plans.list(bob, bob_ws))[0]
    assert expired.status == "expired" and expired.terms == 2
    with pytest.raises(Conflict) as poor:
        await plans.purchase(bob, bob_ws, MODEL, 1, "month")  # no money, no plan
    assert poor.value.code == "insufficient_funds"
