"""The autoscaler's decisions on synthetic load curves (1 sample per second)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from remotegpu.domain.workloads.autoscaler import Autoscaler, AutoscalePolicy

POLICY = AutoscalePolicy(min_replicas=0, max_replicas=10, target_concurrency=10)


def simulate(curve, policy=POLICY, start=1, waiting=lambda t, replicas: 0):
    """Feed ``curve`` (in-flight per second); the replica count after each second."""
    scaler, replicas, out = Autoscaler(policy), start, []
    for t, load in enumerate(curve):
        scaler.observe(float(t), load, arrivals=1 if load else 0)
        replicas = scaler.decide(float(t), replicas, waiting(t, replicas))
        out.append(replicas)
    return out


def test_steady_load_settles_on_load_over_target():
    out = simulate([35] * 120)
    assert out[-1] == 4
    assert set(out[40:]) == {4}


def test_sustained_load_is_followed_within_30_seconds():
    out = simulate([10] * 60 + [40] * 60)
    assert out[59] == 1
    assert out[60 + 30] >= 4, out[60:95]


def test_a_burst_scales_up_at_once_through_the_panic_window():
    out = simulate([10] * 60 + [100] * 10)
    assert out[60 + 6] >= 8


def test_scale_down_waits_for_the_delay_then_follows():
    out = simulate([50] * 100 + [10] * 500)
    assert out[99] == 5
    assert min(out[100:100 + 299]) == 5  # not before 5 minutes of lower demand
    assert out[-1] == 1


def test_idle_scales_to_zero_after_the_idle_period_and_a_request_wakes_it():
    out = simulate([10] * 30 + [0] * 400)
    assert out[30 + 200] == 1  # still warm
    assert out[-1] == 0
    # a held request at zero asks for one replica at once
    scaler = Autoscaler(POLICY)
    assert scaler.decide(0.0, 0, waiting=1) == 1


def test_min_replicas_is_a_floor_and_max_a_ceiling():
    policy = AutoscalePolicy(min_replicas=2, max_replicas=3, target_concurrency=1)
    assert set(simulate([0] * 700, policy, start=2)) == {2}
    assert simulate([100] * 60, policy)[-1] == 3


loads = st.lists(st.integers(0, 200), min_size=1, max_size=400)


@settings(max_examples=150, deadline=None)
@given(loads, st.integers(0, 3), st.integers(1, 12), st.floats(1, 50))
def test_decisions_stay_in_bounds_and_never_drop_below_recent_need(curve, lo, span, target):
    policy = AutoscalePolicy(min_replicas=lo, max_replicas=lo + span, target_concurrency=target)
    out = simulate(curve, policy, start=lo)
    for t, replicas in enumerate(out):
        assert policy.min_replicas <= replicas <= policy.max_replicas
        # a drop happens only when the last 5 minutes of 30 s averages asked for no more
        if t and replicas < out[t - 1]:
            recent = [sum(curve[max(0, s - 29): s + 1]) / len(curve[max(0, s - 29): s + 1]) for s in range(max(0, t - 299), t + 1)]
            assert replicas >= min(policy.max_replicas, max(policy.min_replicas, math.ceil(max(recent) / target - 1e-9))) or \
                replicas >= min(out[t - 1], policy.max_replicas)


@settings(max_examples=100, deadline=None)
@given(loads, st.integers(0, 50))
def test_more_load_never_means_fewer_replicas(curve, extra):
    more = [c + extra for c in curve]
    assert all(a <= b for a, b in zip(simulate(curve), simulate(more)))
