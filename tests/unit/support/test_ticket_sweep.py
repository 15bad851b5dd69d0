"""The support automations on in-memory adapters: every ticket is looked at, page by page."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.adapters.support.memory import InMemoryTicketRepository
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.application.support import service as support
from remotegpu.domain.support.calendar import BusinessHours
from remotegpu.domain.support.models import Priority, Ticket, TicketCategory
from remotegpu.domain.support.sla import SlaPolicy, parse_targets

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


class _Notifier:
    def __init__(self) -> None:
        self.messages = []

    async def dispatch(self, messages):
        self.messages += messages
        return []


async def test_the_sweep_pages_through_every_ticket_and_alerts_once(monkeypatch):
    monkeypatch.setattr(support, "_SWEEP_BATCH", 2)
    repo, clock, notifier = InMemoryTicketRepository(), FrozenClock(T0), _Notifier()
    settings = support.SupportSettings(sla=SlaPolicy(hours=BusinessHours.parse("24x7"),
                                                     targets=parse_targets("urgent=1h/2h,high=1h/2h,normal=1h/2h,low=1h/2h")))
    service = support.TicketService(uow=None, repo=repo, clock=clock, notifier=notifier, settings=settings)  # type: ignore[arg-type]
    for n in range(5):
        await repo.add(Ticket(f"t{n}", "u", "s", "d", TicketCategory.BUG, Priority.HIGH, T0, T0, sla_running_since=T0))
    clock.advance(minutes=61)
    assert (await service.sweep())["sla_alerts"] == 5
    assert (await service.sweep())["sla_alerts"] == 0
    assert sorted(m.source_key for m in notifier.messages) == [f"ticket:t{n}:sla:first_response:breach" for n in range(5)]
    assert all(m.audience.admins for m in notifier.messages)
    clock.advance(minutes=60)
    assert (await service.sweep())["sla_alerts"] == 5  # the resolution targets, now
