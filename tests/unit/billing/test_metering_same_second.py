"""Readings that share one second: the metering keeps the second's last reading for what
is held, but a disk made by an earlier reading of that second still exists (Hypothesis
found ``starting`` then ``queued`` at one instant billing no disk)."""

from datetime import datetime, timedelta, timezone

from remotegpu.domain.billing.metering import Reading, segments_of
from remotegpu.domain.billing.prices import Price, PriceBook, ResourceKind

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
PRICES = PriceBook([Price("p-disk", ResourceKind.DISK, "", 11, T0 - timedelta(days=1))])


def _reading(status: str, seq: int, at: datetime = T0) -> Reading:
    return Reading("env", "ws", "u", at, status, "A100", 2, False, 4, 16, 50, seq=seq)


def test_a_disk_made_and_requeued_in_one_second_is_billed_from_that_second():
    segments = segments_of([_reading("starting", 0), _reading("queued", 1)], PRICES, T0 + timedelta(seconds=60))
    disk = [g for g in segments if g.kind is ResourceKind.DISK]
    assert [(g.start, g.end, g.quantity) for g in disk] == [(T0, None, 50)]


def test_a_disk_made_and_deleted_in_one_second_is_not_billed():
    segments = segments_of([_reading("starting", 0), _reading("deleted", 1)], PRICES, T0 + timedelta(seconds=60))
    assert [g for g in segments if g.kind is ResourceKind.DISK] == []
