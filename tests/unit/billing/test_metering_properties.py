"""Properties of the pure metering and rating rules (domain/billing), over random
lifecycles delivered duplicated, reordered, replayed, with crashes between ticks."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotegpu.domain.billing.metering import Reading, Segment, open_compute, second, segments_of
from remotegpu.domain.billing.money import format_minor, parse_minor, rate
from remotegpu.domain.billing.prices import Price, PriceBook, ResourceKind

T0 = datetime(2026, 1, 31, 23, 0, 0, tzinfo=timezone.utc)  # a month boundary within reach
STATUSES = ["queued", "starting", "running", "stopping", "stopped", "lost", "failed", "deleting", "deleted"]

step = st.tuples(
    st.integers(0, 5400),  # seconds after the previous reading (0: same second)
    st.integers(0, 999_999),  # microseconds
    st.sampled_from(STATUSES[:-1] + ["running", "running", "stopped"]),
    st.booleans(),  # with_gpu
)
price_change = st.tuples(st.sampled_from([k for k in ResourceKind if k.period_seconds and not k.value.startswith("gpu_")]), st.integers(0, 4 * 3600), st.integers(0, 5000))


def _book(changes) -> PriceBook:
    prices = [
        Price("p-gpu", ResourceKind.GPU, "A100", 1234, T0 - timedelta(days=1)),
        Price("p-cpu", ResourceKind.CPU, "", 7, T0 - timedelta(days=1)),
        Price("p-mem", ResourceKind.MEMORY, "", 3, T0 - timedelta(days=1)),
        Price("p-disk", ResourceKind.DISK, "", 11, T0 - timedelta(days=1)),
        # no-GPU mode is never priced before its first change: unpriced = free
    ]
    for i, (kind, offset, unit) in enumerate(changes):
        prices.append(Price(f"c{i}", kind, "A100" if kind is ResourceKind.GPU else "", unit, T0 + timedelta(seconds=offset)))
    return PriceBook(prices)


def _readings(steps) -> list[Reading]:
    out, t = [], T0
    for i, (dt, us, status, with_gpu) in enumerate(steps):
        t = t + timedelta(seconds=dt)
        out.append(Reading("env", "ws", "u", t.replace(microsecond=us) if dt else t, status, "A100", 2, with_gpu, 4, 16, 50, seq=i))
        t = out[-1].at
        if status == "deleted":
            break
    return out


def _held_at(readings: list[Reading], s: datetime) -> dict:
    """Brute force: what is held during the second starting at ``s``."""
    ordered = sorted(readings, key=lambda r: (r.at, r.seq))
    disk, current = False, None
    for r in ordered:
        if second(r.at) > s:
            break
        disk = (disk or r.status in ("starting", "running")) and r.status != "deleted"
        current = r
    return current.held(disk) if current else {}


def _covering(segments: list[Segment], res, s: datetime, end: datetime) -> list[Segment]:
    return [g for g in segments if (g.kind, g.model) == res and g.start <= s < (g.end or end)]


class Meter:
    """The store's job, simulated: upsert segments, charge what each one's amount moved."""

    def __init__(self) -> None:
        self.charged: dict[str, int] = {}
        self.ledger = 0

    def tick(self, known: list[Reading], prices: PriceBook, now: datetime) -> list[Segment]:
        segments = segments_of(known, prices, now)
        keys = {g.key for g in segments}
        for g in segments:
            amount = g.amount(second(now))
            self.ledger -= amount - self.charged.get(g.key, 0)
            self.charged[g.key] = amount
        for key in [k for k in self.charged if k not in keys]:  # a late reading rewrote history
            self.ledger += self.charged.pop(key)
        return segments


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=14), st.lists(price_change, max_size=4), st.randoms(use_true_random=False),
       st.integers(1, 4))
def test_billed_total_is_the_exact_sum_of_rounded_segments_whatever_the_delivery(steps, changes, rnd: random.Random, ticks_per_step):
    prices = _book(changes)
    truth = _readings(steps)
    end = second(truth[-1].at) + timedelta(seconds=rnd.randint(0, 7200))
    # Delivery: duplicated, replayed, reordered; ticks (some crash before storing) in between.
    delivered = truth + [rnd.choice(truth) for _ in range(len(truth) // 2)]
    rnd.shuffle(delivered)
    meter, known = Meter(), []
    for r in delivered:
        known.append(r)
        for _ in range(ticks_per_step):
            now = min(end, max(x.at for x in known) + timedelta(seconds=rnd.randint(0, 120)))
            if rnd.random() < 0.2:
                segments_of(list(known), prices, now)  # crash: computed, never stored
                continue
            meter.tick(list(known), prices, now)
    final = meter.tick(truth, prices, end)

    # 1. Billed = the exact sum of each segment's amount (one half-up rounding per segment).
    assert -meter.ledger == sum(g.amount(end) for g in final)
    assert -meter.ledger == sum(
        rate(g.quantity, g.unit_price, int(((g.end or end) - g.start).total_seconds()), g.kind.period_seconds) for g in final
    )
    # 2. Keys are unique and deterministic (the same history gives the same segments).
    assert len({g.key for g in final}) == len(final)
    assert segments_of(list(reversed(truth)) + truth, prices, end) == final
    # 3. No overlap per resource; each second held is covered once, with its quantity and
    #    the price in force at that second; nothing is billed for a second not held.
    for g in final:
        assert g.end is None or g.end > g.start
        assert (g.start.year, g.start.month) == ((g.end or end) - timedelta(seconds=1)).timetuple()[:2] or g.end is None and g.start == end
    start = second(truth[0].at)
    resources = {(g.kind, g.model) for g in final}
    probe = sorted({start, end - timedelta(seconds=1)} | {g.start for g in final} | {g.end for g in final if g.end}
                   | {second(r.at) for r in truth} | {start + timedelta(seconds=rnd.randint(0, max(0, int((end - start).total_seconds()))))
                                                     for _ in range(20)})
    for s in probe:
        if not start <= s < end:
            continue
        held = _held_at(truth, s)
        for res in resources | set(held):
            covering = _covering(final, res, s, end)
            if res in held:
                assert len(covering) == 1, (res, s, covering)
                g = covering[0]
                assert g.quantity == held[res]
                price = prices.at(res[0], res[1], s)
                assert g.unit_price == (price.unit_price if price else 0)
            else:
                assert covering == [], (res, s)
    # 4. A running environment has exactly one open segment per compute resource it holds.
    last = _held_at(truth, second(truth[-1].at))
    opened = open_compute(final)
    assert sorted((g.kind, g.model) for g in opened) == sorted(r for r in last if r[0].compute)
    assert len(opened) == len({(g.kind, g.model) for g in opened})
    if sorted(truth, key=lambda r: (r.at, r.seq))[-1].status == "running":
        assert opened


def test_rate_rounds_half_up_once():
    assert rate(1, 1, 1800, 3600) == 1  # 0.5 → 1
    assert rate(1, 1, 1799, 3600) == 0
    assert rate(2, 1234, 3600, 3600) == 2468
    assert rate(50, 11, 86400, 86400) == 550
    assert format_minor(-1234) == "-12.34 CNY" and parse_minor("12.3") == 1230 and parse_minor("-0.05") == -5


def test_price_change_splits_a_segment_and_usage_before_keeps_the_old_price():
    prices = PriceBook([Price("old", ResourceKind.CPU, "", 100, T0 - timedelta(days=1)),
                        Price("new", ResourceKind.CPU, "", 200, T0 + timedelta(minutes=30))])
    r = Reading("e", "w", "u", T0, "running", cpu_cores=1)
    segs = segments_of([r], prices, T0 + timedelta(hours=1))
    assert [(g.price_id, g.amount(T0 + timedelta(hours=1))) for g in segs] == [("old", 50), ("new", 100)]
    assert segs[0].end == T0 + timedelta(minutes=30) and segs[1].end is None


def test_stopped_environment_keeps_paying_for_its_disk_until_deleted():
    prices = PriceBook([Price("d", ResourceKind.DISK, "", 24, T0 - timedelta(days=1))])
    rs = [Reading("e", "w", "u", T0, "queued", disk_gib=10), Reading("e", "w", "u", T0 + timedelta(hours=1), "running", disk_gib=10, seq=1),
          Reading("e", "w", "u", T0 + timedelta(hours=2), "stopped", disk_gib=10, seq=2),
          Reading("e", "w", "u", T0 + timedelta(hours=5), "deleted", disk_gib=10, seq=3)]
    segs = segments_of(rs, prices, T0 + timedelta(hours=9))
    disk = [g for g in segs if g.kind is ResourceKind.DISK]
    # 4 hours of 10 GiB at 24/GiB-day = 40; split at the month start (T0 + 1h is 1 February).
    assert sum(g.amount() for g in disk) == 40 and disk[0].start == T0 + timedelta(hours=1)
    assert all(g.end is not None for g in segs)


def test_no_gpu_mode_is_one_flat_line():
    prices = PriceBook([Price("n", ResourceKind.NOGPU, "", 10, T0)])
    r = Reading("e", "w", "u", T0, "running", "A100", 2, False, 4, 16, 0)
    segs = segments_of([r], prices, T0 + timedelta(hours=2))
    # split at the month start (T0 + 1 h), 10 per hour each
    assert [(g.kind, g.quantity, g.amount(T0 + timedelta(hours=2))) for g in segs] == [(ResourceKind.NOGPU, 1, 10)] * 2
