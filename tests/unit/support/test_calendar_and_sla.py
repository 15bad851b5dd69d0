"""Business-hours arithmetic and SLA targets (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotegpu.domain.support.calendar import BusinessHours, CalendarError
from remotegpu.domain.support.models import Priority, Ticket, TicketCategory, TicketStatus
from remotegpu.domain.support.sla import SlaPolicy, parse_targets

UTC = timezone.utc
FRI_17 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # a Friday
HOURS = BusinessHours.parse("mon-fri 09:00-18:00")


def test_parse_and_refuse():
    assert BusinessHours.parse("Sun-Thu 08:30-17:30", "Asia/Riyadh").weekdays == frozenset({6, 0, 1, 2, 3})
    assert BusinessHours.parse("24x7").always
    for bad in ("mon-fri", "mon-fri 18:00-09:00", "xyz 09:00-10:00", "mon 25:00-26:00"):
        with pytest.raises(CalendarError):
            BusinessHours.parse(bad)
    with pytest.raises(CalendarError):
        BusinessHours.parse("24x7", "Mars/Olympus")
    with pytest.raises(CalendarError):
        parse_targets("urgent=1h/4h")  # the others are missing
    with pytest.raises(CalendarError):
        parse_targets("urgent=1d/4h,high=1h/2h,normal=1h/2h,low=1h/2h")  # days are ambiguous in business time


def test_the_weekend_does_not_count():
    monday_10 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert HOURS.seconds_between(FRI_17, monday_10) == 2 * 3600
    assert HOURS.add(FRI_17, 2 * 3600) == monday_10
    assert HOURS.add(datetime(2026, 12, 5, 12, tzinfo=UTC), 60) == datetime(2026, 12, 7, 9, 1, tzinfo=UTC)


def test_a_zone_with_daylight_saving_counts_wall_clock_hours():
    berlin = BusinessHours.parse("mon-fri 09:00-18:00", "Europe/Berlin")
    # Friday 2026-10-23 (CEST: 09-18 is 07-16 UTC) and Monday 2026-10-26 (clocks went back: 08-17 UTC).
    assert berlin.add(datetime(2026, 10, 23, 15, 30, tzinfo=UTC), 3600) == datetime(2026, 10, 26, 8, 30, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
       seconds=st.integers(min_value=1, max_value=200 * 3600),
       spec=st.sampled_from(["mon-fri 09:00-18:00", "sat-mon 22:00-23:30", "24x7"]),
       tz=st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]))
def test_add_and_seconds_between_agree(start, seconds, spec, tz):
    hours = BusinessHours.parse(spec, tz)
    end = hours.add(start, seconds)
    assert end is not None and end > start
    assert hours.seconds_between(start, end) == pytest.approx(seconds, abs=1e-3)
    assert hours.seconds_between(start, end - timedelta(seconds=1)) < seconds  # the earliest such instant


def _ticket(**kw) -> Ticket:
    return Ticket("t", "u", "s", "d", TicketCategory.BUG, Priority.HIGH, FRI_17, FRI_17, sla_running_since=FRI_17, **kw)


def test_sla_pauses_while_pending_and_alerts_once_per_level():
    policy = SlaPolicy(hours=HOURS, targets=parse_targets("urgent=1h/2h,high=1h/3h,normal=2h/4h,low=4h/8h"))
    t = _ticket()
    assert policy.alerts_due(t, FRI_17 + timedelta(minutes=47)) == []
    assert policy.alerts_due(t, FRI_17 + timedelta(minutes=48)) == [("first_response", "warning")]
    t.sla_alerts.add("first_response.warning")
    monday_9_01 = datetime(2026, 12, 7, 9, 1, tzinfo=UTC)  # 61 business minutes
    assert policy.alerts_due(t, monday_9_01) == [("first_response", "breach")]
    policy.record_first_response(t, monday_9_01)
    assert "first_response.breach" in t.sla_alerts
    t.move(TicketStatus.PENDING, monday_9_01, policy.elapsed(t, monday_9_01))
    much_later = monday_9_01 + timedelta(days=10)
    assert policy.elapsed(t, much_later) == 61 * 60 and policy.alerts_due(t, much_later) == []
    status = policy.status(t, much_later)
    assert status[1].paused and status[1].due_at is None
    t.move(TicketStatus.OPEN, much_later, 0.0)
    # 3h resolution: 119 business minutes left from Thursday 09:01 → 11:00.
    assert policy.status(t, much_later)[1].due_at == much_later + timedelta(minutes=119)
