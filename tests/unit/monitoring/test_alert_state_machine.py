"""The per-series alert state machine: pending → firing → resolved, `for`, hysteresis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from remotegpu.domain.monitoring.alerts import AlertStatus, step


def run(breaches: list[bool], *, for_s: float, keep_s: float, dt: float = 10.0):
    state, events = None, []
    for i, b in enumerate(breaches):
        state, event = step(state, b, i * dt, for_seconds=for_s, keep_firing_for_seconds=keep_s)
        events.append(event)
        if state is not None and state.status is AlertStatus.RESOLVED:
            state = None
    return events


def test_fires_after_for_and_resolves_after_keep_firing_for():
    events = run([True] * 4 + [False] * 4, for_s=30, keep_s=20)
    assert events == [None, None, None, "firing", None, "resolved", None, None]  # 20 s after the last breach


def test_a_short_breach_never_fires():
    assert run([True, True, False, True, True, False], for_s=30, keep_s=0) == [None] * 6


def test_for_zero_fires_at_once():
    assert run([True, False], for_s=0, keep_s=0) == ["firing", "resolved"]


def test_flapping_inside_keep_firing_for_fires_once():
    events = run([True, True] + [False, True] * 10 + [False] * 5, for_s=10, keep_s=30)
    assert events.count("firing") == 1 and events.count("resolved") == 1


@given(st.lists(st.booleans(), max_size=200), st.integers(0, 100), st.integers(0, 100))
def test_events_alternate_and_respect_for_and_hysteresis(breaches, for_steps, keep_steps):
    dt = 10.0
    events = run(breaches, for_s=for_steps * dt, keep_s=keep_steps * dt, dt=dt)
    announced = [e for e in events if e]
    # firing and resolved strictly alternate, starting with firing
    assert announced == ["firing", "resolved"] * (len(announced) // 2) + (["firing"] if len(announced) % 2 else [])
    for i, e in enumerate(events):
        if e == "firing":  # breached on each of the last for_steps + 1 evaluations
            assert all(breaches[max(0, i - for_steps): i + 1])
        if e == "resolved":  # no breach for keep_steps evaluations before (and now)
            assert not any(breaches[max(0, i - keep_steps + 1): i + 1]) if keep_steps else not breaches[i]
    # a series that breaches forever after firing never resolves
    if breaches and all(breaches[-(for_steps + 1):]) and len(breaches) > for_steps:
        assert "firing" in announced
