"""Service-level targets per priority, counted in business time, paused while pending.

A ticket banks the business seconds its clock ran (``sla_elapsed``) whenever the clock
stops, and remembers when it started again (``sla_running_since``); the elapsed time
now is the bank plus the business time since then. First response is measured to
the first public reply of support staff, resolution to ``solved``. An alert is raised
once per target and level: ``warning`` at ``warn_ratio`` of the target, ``breach`` past it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from remotegpu.domain.support.calendar import BusinessHours, CalendarError
from remotegpu.domain.support.models import Priority, Ticket

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(h|m)$")

DEFAULT_TARGETS = "urgent=1h/4h,high=4h/16h,normal=8h/40h,low=24h/80h"


def _seconds(text: str) -> float:
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise CalendarError(f"SLA target {text!r}: expected business hours or minutes, e.g. 4h or 30m")
    return float(m.group(1)) * (3600 if m.group(2) == "h" else 60)


def parse_targets(spec: str) -> dict[Priority, tuple[float, float]]:
    """``"urgent=1h/4h,high=4h/16h,..."`` → priority → (first response, resolution) business seconds."""
    targets: dict[Priority, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        first, slash, resolution = value.partition("/")
        try:
            priority = Priority(name.strip().lower())
        except ValueError:
            raise CalendarError(f"SLA targets: unknown priority {name!r}") from None
        if not sep or not slash:
            raise CalendarError(f"SLA targets: {part!r} should be PRIORITY=FIRST/RESOLUTION, e.g. high=4h/16h")
        targets[priority] = (_seconds(first), _seconds(resolution))
    missing = [p.value for p in Priority if p not in targets]
    if missing:
        raise CalendarError(f"SLA targets: missing {', '.join(missing)}")
    return targets


@dataclass(frozen=True)
class Target:
    name: str  # FIRST_RESPONSE | RESOLUTION
    target_seconds: float
    elapsed_seconds: float
    done_at: datetime | None  # met (responded / solved), or None while it runs
    due_at: datetime | None  # while running: when it breaches (business time); None when paused or done
    breached: bool
    paused: bool


@dataclass(frozen=True)
class SlaPolicy:
    hours: BusinessHours = field(default_factory=BusinessHours)
    targets: dict[Priority, tuple[float, float]] = field(default_factory=lambda: parse_targets(DEFAULT_TARGETS))
    warn_ratio: float = 0.8

    def elapsed(self, ticket: Ticket, now: datetime) -> float:
        running = self.hours.seconds_between(ticket.sla_running_since, now) if ticket.sla_running_since else 0.0
        return ticket.sla_elapsed + running

    def status(self, ticket: Ticket, now: datetime) -> list[Target]:
        elapsed = self.elapsed(ticket, now)
        first, resolution = self.targets[ticket.priority]
        out = []
        for name, target, done in ((FIRST_RESPONSE, first, ticket.first_response_at), (RESOLUTION, resolution, ticket.solved_at)):
            breached = f"{name}.breach" in ticket.sla_alerts or (done is None and elapsed >= target)
            paused = ticket.sla_running_since is None and done is None
            due = None
            if done is None and ticket.sla_running_since is not None:
                due = self.hours.add(now, target - elapsed) if elapsed < target else now
            out.append(Target(name, target, elapsed, done, due, breached, paused))
        return out

    def alerts_due(self, ticket: Ticket, now: datetime) -> list[tuple[str, str]]:
        """(target name, "warning" | "breach") alerts not raised yet; the caller records them."""
        if ticket.sla_running_since is None:  # paused or finished: nothing can newly happen
            return []
        elapsed = self.elapsed(ticket, now)
        first, resolution = self.targets[ticket.priority]
        due = []
        for name, target, done in ((FIRST_RESPONSE, first, ticket.first_response_at), (RESOLUTION, resolution, ticket.solved_at)):
            if done is not None:
                continue
            if elapsed >= target:
                if f"{name}.breach" not in ticket.sla_alerts:
                    due.append((name, "breach"))
            elif elapsed >= self.warn_ratio * target and f"{name}.warning" not in ticket.sla_alerts:
                due.append((name, "warning"))
        return due

    def record_first_response(self, ticket: Ticket, now: datetime) -> None:
        """The first public reply of staff: a late one is a breach even if no sweep saw it."""
        if ticket.first_response_at is not None:
            return
        ticket.first_response_at = now
        if self.elapsed(ticket, now) > self.targets[ticket.priority][0]:
            ticket.sla_alerts.add(f"{FIRST_RESPONSE}.breach")
