"""Placement prefers, all else equal, a host that already has the environment's image
(issue 15: a 15 GB image takes tens of seconds to pull) — and never over packing."""

from __future__ import annotations

from remotegpu.domain.scheduling import Allocation, FleetState, PlacementRequest, place
from tests.unit.scheduling.test_placement_examples import host


def test_equal_hosts_the_one_with_the_image_wins():
    a, b, c = host("a"), host("b"), host("c")
    fleet = FleetState([a, b, c], [])
    assert place(fleet, PlacementRequest(gpu_count=2)).host_id == "a"
    assert place(fleet, PlacementRequest(gpu_count=2, prefer_hosts=frozenset({"c"}))).host_id == "c"
    assert place(fleet, PlacementRequest(gpu_count=0, cpu_cores=2, prefer_hosts=frozenset({"b"}))).host_id == "b"


def test_packing_still_outranks_the_image():
    a, b = host("a"), host("b")
    fleet = FleetState([a, b], [Allocation("b", tuple(g.uuid for g in b.gpus[:6]))])  # b: 2 free, the fuller
    assert place(fleet, PlacementRequest(gpu_count=1, prefer_hosts=frozenset({"a"}))).host_id == "b"


def test_a_pinned_environment_stays_where_its_disk_is():
    a, b = host("a"), host("b")
    fleet = FleetState([a, b], [])
    request = PlacementRequest(gpu_count=1, pin_host_id="a", prefer_hosts=frozenset({"b"}))
    assert place(fleet, request).host_id == "a"
