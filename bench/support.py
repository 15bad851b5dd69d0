"""Support automations: how long one sweep (SLA alerts, reminders, auto-solve, auto-close)
takes over N open tickets, per store.

Seeds ``--tickets`` tickets (default 5,000: new/open/pending/solved, all priorities,
opened over the last ten days, 24x7 business hours so many are past their targets),
then times ``TicketService.sweep`` twice: the first raises every alert due and moves
what is due (each change one versioned write); the second finds nothing new to do (the
steady state every server repeats each minute). Notifications go to a counting stub:
this measures the sweep, not the notifications context. Baseline in the same run: a
plain SELECT of the same rows. PostgreSQL when REMOTEGPU_BENCH_POSTGRES_URL is set.

    .venv/bin/python bench/support.py [--tickets 5000] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from remotegpu.adapters.db import tables as t  # noqa: E402
from remotegpu.adapters.db.engine import create_engine, create_session_factory  # noqa: E402
from remotegpu.adapters.db.migrate import upgrade, upgrade_engine  # noqa: E402
from remotegpu.adapters.support.memory import InMemoryTicketRepository  # noqa: E402
from remotegpu.adapters.support.sql import SqlTicketRepository, _row  # noqa: E402
from remotegpu.application.shared.clock import FrozenClock  # noqa: E402
from remotegpu.application.support.service import SupportSettings, TicketService  # noqa: E402
from remotegpu.domain.support.calendar import BusinessHours  # noqa: E402
from remotegpu.domain.support.models import Priority, Ticket, TicketCategory, TicketStatus  # noqa: E402
from remotegpu.domain.support.sla import DEFAULT_TARGETS, SlaPolicy, parse_targets  # noqa: E402

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
USER = "00000000-0000-0000-0000-0000000000b1"


class _Count:
    def __init__(self) -> None:
        self.n = 0

    async def dispatch(self, messages):
        self.n += len(messages)
        return []


def tickets(n: int) -> list[Ticket]:
    rnd = random.Random(17)
    out = []
    for i in range(n):
        opened = NOW - timedelta(minutes=rnd.randrange(1, 10 * 24 * 60))
        status = rnd.choice([TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.SOLVED])
        x = Ticket(f"{i:08d}-0000-0000-0000-000000000000", USER, f"ticket {i}", "d", TicketCategory.BUG,
                   rnd.choice(list(Priority)), opened, opened, status=status, sla_running_since=opened, version=1)
        if status in (TicketStatus.PENDING, TicketStatus.SOLVED):
            x.sla_running_since, x.sla_elapsed = None, 600.0
            x.first_response_at = opened + timedelta(minutes=10)
            x.pending_since = opened if status is TicketStatus.PENDING else None
            x.solved_at = opened if status is TicketStatus.SOLVED else None
        out.append(x)
    return out


async def make_repo(kind: str, tmp: Path, seed: list[Ticket]):
    if kind == "memory":
        repo = InMemoryTicketRepository()
        for x in seed:
            await repo.add(x)
        return repo, None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
    else:
        from tests.support.postgres import reset_schema

        url = os.environ["REMOTEGPU_BENCH_POSTGRES_URL"]
        await asyncio.to_thread(reset_schema, url)
        engine = create_engine(url)
        await upgrade_engine(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(t.users).values(id=USER, username="bench", email="b@example.com", password_hash="x",
                                                     created_at=NOW, display_name="", is_active=True, is_admin=False,
                                                     session_epoch=0))
        await conn.execute(sa.insert(t.support_tickets), [_row(x) for x in seed])
    return SqlTicketRepository(create_session_factory(engine)), engine


async def run(kind: str, n: int, tmp: Path) -> None:
    seed = tickets(n)
    repo, engine = await make_repo(kind, tmp, seed)
    settings = SupportSettings(sla=SlaPolicy(hours=BusinessHours.parse("24x7"), targets=parse_targets(DEFAULT_TARGETS)))
    notifier = _Count()
    service = TicketService(uow=None, repo=repo, clock=FrozenClock(NOW), notifier=notifier, settings=settings)  # type: ignore[arg-type]
    start = time.perf_counter()
    done = await service.sweep()
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = await service.sweep()
    second = time.perf_counter() - start
    start = time.perf_counter()
    page, after = [], None
    while True:  # baseline: read the same rows, nothing else
        rows = await repo.in_statuses(list(TicketStatus), 1000, after)
        page += rows
        if len(rows) < 1000:
            break
        after = rows[-1].id
    read = time.perf_counter() - start
    changed = sum(done.values())
    print(f"{kind:9} first sweep {first * 1000:8.0f} ms ({changed} changes: {done}, {notifier.n} notifications)")
    print(f"{'':9} idle sweep  {second * 1000:8.0f} ms ({n / second:,.0f} tickets/s; changes {sum(again.values())})"
          f"   baseline read {read * 1000:6.0f} ms")
    if engine is not None:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--stores", default="memory,sqlite" + (",postgres" if os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL") else ""))
    args = parser.parse_args()
    print(f"{args.tickets} tickets, one sweep each way (24x7 hours, default targets)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores.split(","):
            asyncio.run(run(kind, args.tickets, Path(tmp)))


if __name__ == "__main__":
    main()
