"""Billing through the real use cases: an environment created, run (as its agent reports),
stopped and started again is charged to the second; a workspace at zero has its running
environments stopped (GPUs released, disk kept), is warned, and after N days in arrears
its disks are deleted. On the in-memory store, SQLite and PostgreSQL (migrated schema)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from dependency_injector import providers

from remotegpu.adapters.db.migrate import upgrade_async
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.billing.metering import Reading
from remotegpu.domain.billing.money import rate
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound
from remotegpu.entrypoints.containers import build_container, close_container
from tests.conftest import make_settings
from tests.support.components import postgres_url
from tests.support.postgres import reset_schema
from tests.unit.environments.conftest import World

MODEL = "NVIDIA A100-SXM4-80GB"
T0 = datetime(2026, 3, 10, 10, 0, 0, tzinfo=timezone.utc)


async def _world(kind: str, tmp_path):
    persistence, url = "memory", None
    if kind == "sqlite":
        persistence, url = "sql", f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    elif kind == "postgres":
        persistence, url = "sql", postgres_url()
        await asyncio.to_thread(reset_schema, url)
    if url:
        await upgrade_async(url)
    settings = make_settings(tmp_path, billing_enabled=True, **({"database_url": url} if url else {}))
    container = build_container(settings, persistence=persistence)
    clock = FrozenClock(T0)
    container.clock.override(providers.Object(clock))
    return World(container, clock)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def world(request, tmp_path):
    w = await _world(request.param, tmp_path)
    yield w
    await close_container(w.container)


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_world(request, tmp_path):
    w = await _world(request.param, tmp_path)
    yield w
    await close_container(w.container)


async def _setup(world):
    admin = await world.user("root", admin=True)
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    billing = world.container.billing_service()
    for kind, model, price in (("gpu", MODEL, 1000), ("cpu", "", 10), ("memory", "", 1), ("disk", "", 24)):
        await billing.set_price(admin, kind, model, price, None)
    host = await world.add_host()
    return admin, alice, ws, billing, host


def _expected(gpu_s: int, compute_s: int, disk_s: int) -> int:
    return (rate(1, 1000, gpu_s, 3600) + rate(2, 10, compute_s, 3600) + rate(8, 1, compute_s, 3600)
            + rate(10, 24, disk_s, 86400))


async def test_run_stop_start_is_charged_to_the_second_and_zero_balance_stops_it(world):
    admin, alice, ws, billing, host = await _setup(world)
    metering = world.container.metering()
    envs = world.envs
    req = CreateRequest(ws, "train", gpu_count=1, gpu_model=MODEL, cpu_cores=2, memory_gib=8, disk_gib=10)

    # Pay-as-you-go: no money, no GPU environment (409 with balance and hourly price).
    with pytest.raises(Conflict) as refused:
        await envs.create(alice, req)
    assert refused.value.code == "insufficient_funds"
    assert refused.value.details["balance"] == 0
    assert refused.value.details["hourly_price"] == 1000 + 20 + 8 + 10  # disk: 10 GiB × 24/day = 10/h

    await billing.post(admin, ws, "topup", 5000, "bank transfer #1", reference="tx-1")
    with pytest.raises(Conflict):  # the same transfer is booked once
        await billing.post(admin, ws, "topup", 5000, "bank transfer #1 again", reference="tx-1")
    env = (await envs.create(alice, req)).env
    await host.beat_all_running()
    assert (await envs.get(alice, env.id)).env.status is EnvStatus.RUNNING
    run1 = world.clock.now()

    world.clock.advance(seconds=125)
    await metering.run()
    assert (await billing.wallet(alice, ws)).balance == 5000 - _expected(125, 125, 125)

    world.clock.advance(seconds=3600 + 17)  # ran 1 h 2 min 22 s in all
    await envs.stop(alice, env.id)
    await host.beat_all_running()
    assert (await envs.get(alice, env.id)).env.status is EnvStatus.STOPPED
    ran = int((world.clock.now() - run1).total_seconds())
    stopped_at = world.clock.now()

    world.clock.advance(seconds=600)  # stopped: only the disk is charged
    await metering.run()
    world.clock.advance(seconds=33)
    await envs.start(alice, env.id)
    await host.beat_all_running()
    run2 = world.clock.now()
    world.clock.advance(seconds=61)
    await metering.run()
    await metering.run()  # a second pass at the same instant charges nothing more

    disk_s = int((world.clock.now() - run1).total_seconds())
    compute_s = ran + 61
    # The disk exists from the first "starting" (same instant as running here: one agent beat).
    expected = rate(1, 1000, ran, 3600) + rate(1, 1000, 61, 3600) + rate(2, 10, ran, 3600) + rate(2, 10, 61, 3600) \
        + rate(8, 1, ran, 3600) + rate(8, 1, 61, 3600) + rate(10, 24, disk_s, 86400)
    wallet = await billing.wallet(alice, ws)
    assert wallet.balance == 5000 - expected, (wallet.balance, expected, compute_s)
    entries, total = await billing.ledger(alice, ws, limit=100, offset=0)
    assert sum(e.amount for e in entries if e.kind.value == "charge") == -expected
    # The draft bill's lines are the segments; its total equals the ledger's charges exactly.
    bill = await billing.bill(alice, ws, "2026-03")
    assert bill.status == "draft" and bill.total == bill.charged == expected
    gpu_lines = [line for line in bill.lines if line.kind == "gpu"]
    assert sum(line.seconds for line in gpu_lines) == ran + 61 and run2 - stopped_at == timedelta(seconds=633)
    usage = await billing.usage(alice, ws, start=None, end=None, group_by="gpu_model")
    assert usage["total"] == expected and {g["key"] for g in usage["groups"]} == {"", MODEL}
    csv_text = await billing.bill_csv(alice, ws, "2026-03")
    assert csv_text.splitlines()[-1].endswith(f",total,,,,,{expected}")

    # Another tenant sees no wallet at all.
    mallory = await world.user("mallory")
    with pytest.raises(NotFound):
        await billing.wallet(mallory, ws)

    # Zero balance: the next pass stops it (GPUs released, disk kept) and says why.
    balance = (await billing.wallet(alice, ws)).balance
    await billing.post(admin, ws, "adjustment", -balance, "test: drain the wallet")
    world.clock.advance(seconds=30)
    result = await metering.run()
    assert result.stopped == [env.id]
    stopped = (await envs.get(alice, env.id)).env
    assert stopped.desired.value == "stopped" and "arrears" in stopped.status_message
    async with world.container.uow() as uow:
        assert await uow.allocations.gpus_of(env.id) == []
    await host.beat_all_running()
    assert (await envs.get(alice, env.id)).env.status is EnvStatus.STOPPED  # disk kept
    notes, _ = await world.container.notification_repo().list_for_user(alice.id, unread_only=False, limit=50, offset=0)
    assert "billing.arrears_stopped" in {n.kind for n in notes}
    with pytest.raises(Conflict) as again:
        await envs.start(alice, env.id)
    assert again.value.code == "insufficient_funds"

    # Disk charges go on; warnings before the disks are deleted after 15 days in arrears.
    async def warnings() -> int:
        notes, _ = await world.container.notification_repo().list_for_user(alice.id, unread_only=False, limit=50, offset=0)
        return [n.kind for n in notes].count("billing.disk_deletion_warning")

    for days, expected_warnings in ((9, 1), (3, 2), (1, 2), (1, 3)):  # 7, 3 and 1 day(s) before day 15
        world.clock.advance(days=days)
        await metering.run()
        assert await warnings() == expected_warnings, days
        assert (await envs.get(alice, env.id)).env.status is EnvStatus.STOPPED
    world.clock.advance(days=1, seconds=1)
    result = await metering.run()
    assert result.deleted == [env.id]
    assert (await envs.get(alice, env.id)).env.status in (EnvStatus.DELETING, EnvStatus.DELETED)
    notes, _ = await world.container.notification_repo().list_for_user(alice.id, unread_only=False, limit=50, offset=0)
    assert "billing.disks_deleted" in {n.kind for n in notes}
    # Disk charges went on while stopped: the ledger's charges still equal the segments exactly.
    await host.beat_all_running()
    await metering.run()
    segments_total = (await billing.usage(alice, ws, start=T0, end=world.clock.now() + timedelta(seconds=1), group_by="kind"))["total"]
    entries, _ = await billing.ledger(alice, ws, limit=1000, offset=0)
    assert -sum(e.amount for e in entries if e.kind.value == "charge") == segments_total


async def test_a_crash_in_a_pass_and_a_restart_bill_exactly_once(sql_world):
    world = sql_world
    admin, alice, ws, billing, host = await _setup(world)
    await billing.post(admin, ws, "topup", 100_000, "bank transfer", reference="tx-crash")
    await world.envs.create(alice, CreateRequest(ws, "crash", gpu_count=1, gpu_model=MODEL, cpu_cores=2, memory_gib=8,
                                                 disk_gib=10))
    await host.beat_all_running()
    world.clock.advance(seconds=100)
    metering = world.container.metering()
    await metering.run()

    # The next pass dies after writing its segments, before its ledger entries: nothing of it stays.
    world.clock.advance(seconds=50)
    store = world.container.billing_store()
    real = store.transaction

    def crashing():
        cm = real()

        class Crash:
            async def __aenter__(self):
                tx = await cm.__aenter__()

                async def boom(entries):
                    raise RuntimeError("server killed mid-pass")

                tx.add_entries = boom
                return tx

            async def __aexit__(self, *exc):
                return await cm.__aexit__(*exc)

        return Crash()

    store.transaction = crashing
    with pytest.raises(RuntimeError):
        await metering.meter()
    store.transaction = real

    # A new server process on the same database: its first pass bills exactly the 150 s.
    settings = world.container.settings()
    restarted = build_container(settings, persistence="sql")
    restarted.clock.override(providers.Object(world.clock))
    try:
        await restarted.metering().run()
        await restarted.metering().run()
        wallet = await restarted.billing_service().wallet(alice, ws)
        assert wallet.balance == 100_000 - _expected(150, 150, 150)
        entries, _ = await restarted.billing_service().ledger(alice, ws, limit=100, offset=0)
        assert sorted(e.amount for e in entries if e.kind.value == "charge") == sorted(
            [-_expected(100, 100, 100), -(_expected(150, 150, 150) - _expected(100, 100, 100))])
    finally:
        await close_container(restarted)


async def test_a_month_ends_its_bill_is_finalized_equal_to_the_ledger_and_never_changes(world):
    admin, alice, ws, billing, host = await _setup(world)
    world.clock._now = datetime(2026, 3, 31, 23, 0, 0, tzinfo=timezone.utc)
    await billing.post(admin, ws, "topup", 1_000_000, "bank transfer", reference="tx-month")
    env = (await world.envs.create(alice, CreateRequest(ws, "month", gpu_count=1, gpu_model=MODEL, cpu_cores=2,
                                                        memory_gib=8, disk_gib=10))).env
    await host.beat_all_running()
    metering = world.container.metering()
    world.clock.advance(seconds=1800)
    await metering.run()
    with pytest.raises(InvalidInput):
        await billing.finalize("2026-03")  # the month still runs
    world.clock.advance(seconds=1800 + 45)  # 45 s into April
    with pytest.raises(InvalidInput):
        await billing.finalize("2026-04")  # April runs
    await metering.run()
    assert await billing.finalize() == 1
    assert await billing.finalize() == 0  # once
    march = await billing.bill(alice, ws, "2026-03")
    assert march.status == "finalized" and march.total == march.charged == _expected(3600, 3600, 3600)
    assert sum(line.seconds for line in march.lines if line.kind == "gpu") == 3600
    world.clock.advance(seconds=600)
    await metering.run()
    assert (await billing.bill(alice, ws, "2026-03")).lines == march.lines  # immutable
    april = await billing.bill(alice, ws, "2026-04")
    assert april.status == "draft" and april.total == april.charged == _expected(645, 645, 645)
    bills = await billing.bills(alice, ws)
    assert [b.period for b in bills] == ["2026-04", "2026-03"]
    assert env.id in {line.environment_id for line in march.lines}


async def test_budget_notices_at_50_80_100_percent_and_a_hard_stop(world):
    admin, alice, ws, billing, host = await _setup(world)
    await billing.post(admin, ws, "topup", 1_000_000, "bank transfer", reference="tx-budget")
    await billing.update_wallet(alice, ws, budget_monthly=2000, budget_hard_stop=True)
    env = (await world.envs.create(alice, CreateRequest(ws, "budget", gpu_count=1, gpu_model=MODEL, cpu_cores=2,
                                                        memory_gib=8, disk_gib=10))).env
    await host.beat_all_running()
    metering = world.container.metering()

    async def notices() -> list[int]:
        notes, _ = await world.container.notification_repo().list_for_user(alice.id, unread_only=False, limit=50, offset=0)
        return sorted(int(n.title.split("% ")[0].rsplit(" ", 1)[1]) for n in notes if n.kind == "billing.budget")

    world.clock.advance(seconds=3600)  # 1,038 of 2,000
    result = await metering.run()
    assert await notices() == [50] and result.stopped == []
    world.clock.advance(seconds=1800)  # 1,557: 77 %
    await metering.run()
    assert await notices() == [50]
    world.clock.advance(seconds=300)  # 1,644: 82 %
    await metering.run()
    assert await notices() == [50, 80]
    world.clock.advance(seconds=1500)  # 2,076 of 2,000: notice and hard stop
    result = await metering.run()
    assert await notices() == [50, 80, 100]
    assert result.stopped == [env.id]
    events, _ = await world.envs.events(alice, env.id, limit=50, offset=0)
    assert any("budget" in e.reason for e in events)


async def test_an_expired_credit_grant_takes_back_only_its_unused_part(world):
    admin, alice, ws, billing, host = await _setup(world)
    await billing.post(admin, ws, "topup", 10_000, "bank transfer", reference="tx-credit")
    await billing.post(admin, ws, "credit", 5_000, "welcome credit", expires_at=T0 + timedelta(hours=3))
    await world.envs.create(alice, CreateRequest(ws, "credit", gpu_count=1, gpu_model=MODEL, cpu_cores=2, memory_gib=8,
                                                 disk_gib=10))
    await host.beat_all_running()
    metering = world.container.metering()
    world.clock.advance(seconds=7200)
    await metering.run()
    spent = 15_000 - (await billing.wallet(alice, ws)).balance  # charged in those two hours (credit first)
    world.clock.advance(seconds=3601)
    await metering.run()  # (charges the third hour too)
    assert await billing.expire_credits() == 1
    assert await billing.expire_credits() == 0  # once
    entries, _ = await billing.ledger(alice, ws, limit=50, offset=0)
    expired = [e.amount for e in entries if e.kind.value == "credit_expiry"]
    charged = -sum(e.amount for e in entries if e.kind.value == "charge")
    assert expired == [-(5_000 - charged)] and spent < charged < 5_000


async def test_a_late_reading_for_a_finalized_month_becomes_an_adjustment_and_the_bill_stays(world):
    admin, alice, ws, billing, host = await _setup(world)
    world.clock._now = datetime(2026, 3, 31, 22, 0, 0, tzinfo=timezone.utc)
    await billing.post(admin, ws, "topup", 1_000_000, "bank transfer", reference="tx-late")
    env = (await world.envs.create(alice, CreateRequest(ws, "late", gpu_count=1, gpu_model=MODEL, cpu_cores=2,
                                                        memory_gib=8, disk_gib=10))).env
    await host.beat_all_running()
    metering = world.container.metering()
    world.clock._now = datetime(2026, 4, 1, 0, 0, 30, tzinfo=timezone.utc)
    await metering.run()
    assert await billing.finalize() == 1
    march = await billing.bill(alice, ws, "2026-03")
    # A reading delivered late (an agent's report of a stop at 23:00 in March, stored now).
    store = world.container.billing_store()
    async with store.transaction() as tx:
        await tx.add_readings([Reading(env.id, ws, alice.id, datetime(2026, 3, 31, 23, 0, 0, tzinfo=timezone.utc), "stopped",
                                       MODEL, 1, True, 2, 8, 10, seq=1)])
        await tx.commit()
    world.clock.advance(seconds=30)
    await metering.run()
    assert (await billing.bill(alice, ws, "2026-03")).lines == march.lines  # final: unchanged
    entries, _ = await billing.ledger(alice, ws, limit=100, offset=0)
    corrections = [e for e in entries if e.kind.value == "adjustment" and "2026-03" in e.reason]
    assert len(corrections) == 1 and corrections[0].amount > 0 and corrections[0].period == "2026-04"
    # The correction shows on April's bill as an adjustment by the platform, not on March's.
    april = await billing.bill(alice, ws, "2026-04")
    assert [(a.id, a.actor_id) for a in april.adjustments] == [(corrections[0].id, None)]
    assert april.net == april.total - corrections[0].amount
    assert (await billing.bill(alice, ws, "2026-03")).adjustments == []


async def test_adjustments_refunds_and_credits_show_on_the_bill_and_its_csv_and_stay_once_final(world):
    admin, alice, ws, billing, host = await _setup(world)
    world.clock._now = datetime(2026, 3, 20, 10, 0, 0, tzinfo=timezone.utc)
    await billing.post(admin, ws, "topup", 1_000_000, "bank transfer", reference="tx-adj")
    await world.envs.create(alice, CreateRequest(ws, "adj", gpu_count=1, gpu_model=MODEL, cpu_cores=2, memory_gib=8, disk_gib=10))
    await host.beat_all_running()
    metering = world.container.metering()
    world.clock.advance(seconds=3600)
    await metering.run()
    credit = await billing.post(admin, ws, "credit", 5_000, "welcome credit")
    world.clock.advance(seconds=60)
    fee = await billing.post(admin, ws, "adjustment", -300, "support fee, ticket #12")
    world.clock.advance(seconds=60)
    refund = await billing.post(admin, ws, "refund", 700, "outage on host 3", reference="outage-3")
    bill = await billing.bill(alice, ws, "2026-03")
    # Top-ups are money in, not adjustments; usage lines stay usage only.
    assert [(a.id, a.kind.value, a.amount, a.actor_id, a.reason) for a in bill.adjustments] == [
        (credit.id, "credit", 5_000, admin.id, "welcome credit"), (fee.id, "adjustment", -300, admin.id, "support fee, ticket #12"),
        (refund.id, "refund", 700, admin.id, "outage on host 3")]
    assert bill.adjustments_total == 5_400 and bill.net == bill.total - 5_400 and bill.total == bill.charged
    rows = (await billing.bill_csv(alice, ws, "2026-03")).splitlines()
    assert rows[-1] == f"2026-03,,net,,,,,{bill.net}"
    assert f"2026-03,{fee.id},adjustment,{fee.at.isoformat()},{admin.id},\"support fee, ticket #12\",,300" in rows
    assert f"2026-03,{credit.id},credit,{credit.at.isoformat()},{admin.id},welcome credit,,-5000" in rows
    # The month ends; its final bill keeps these adjustments; April's posts go on April's bill.
    world.clock._now = datetime(2026, 4, 1, 0, 0, 30, tzinfo=timezone.utc)
    await metering.run()
    assert await billing.finalize() == 1
    later = await billing.post(admin, ws, "adjustment", 100, "goodwill")
    bills = {b.period: b for b in await billing.bills(alice, ws)}
    assert bills["2026-03"].status == "finalized" and bills["2026-03"].adjustments_total == 5_400
    assert [a.id for a in bills["2026-03"].adjustments] == [credit.id, fee.id, refund.id]
    assert [a.id for a in bills["2026-04"].adjustments] == [later.id]
    with pytest.raises(NotFound):
        await billing.bill(await world.user("mallory"), ws, "2026-03")


async def test_balance_low_and_bill_finalized_are_webhook_events(world):
    from tests.support.webhooks import seed_webhook

    admin, alice, ws, billing, host = await _setup(world)
    endpoint, _ = await seed_webhook(world.container, ws, alice.id)
    world.clock._now = datetime(2026, 3, 31, 23, 0, 0, tzinfo=timezone.utc)
    await billing.post(admin, ws, "topup", 5_000, "bank transfer", reference="tx-hooks")  # under the 100.00 warning line
    await world.envs.create(alice, CreateRequest(ws, "hooks", gpu_count=1, gpu_model=MODEL, cpu_cores=2, memory_gib=8, disk_gib=10))
    await host.beat_all_running()
    metering = world.container.metering()
    world.clock.advance(seconds=1800)
    await metering.run()
    await metering.run()  # warned once, not again
    world.clock._now = datetime(2026, 4, 1, 0, 0, 30, tzinfo=timezone.utc)
    await metering.run()
    assert await billing.finalize() == 1
    assert await billing.finalize() == 0
    deliveries, _ = await world.container.webhook_store().list_deliveries(endpoint, 100, 0)
    events = sorted(d.event_type for d in deliveries if d.event_type.startswith("billing."))
    assert events == ["billing.balance_low", "billing.bill_finalized"]
    final = json.loads(next(d.body for d in deliveries if d.event_type == "billing.bill_finalized"))
    march = await billing.bill(alice, ws, "2026-03")
    assert final["type"] == "billing.bill_finalized" and final["data"]["period"] == "2026-03"
    assert final["data"]["total"] == march.total and final["data"]["workspace_id"] == ws
    low = json.loads(next(d.body for d in deliveries if d.event_type == "billing.balance_low"))
    assert low["data"]["balance"] < 10_000 and low["data"]["threshold"] == 10_000
