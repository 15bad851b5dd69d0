"""Placement by example: bin packing, topology, filters, the first-fit baseline."""

from __future__ import annotations

import pytest

from remotegpu.domain.fleet.models import Gpu, Host, HostStatus, parse_fake_gpus
from remotegpu.domain.scheduling import Allocation, FleetState, PlacementRequest, first_fit, place
from remotegpu.domain.shared.errors import Conflict, InvalidInput


def gpus(host: str, groups: list[int | None], *, model="A100", numa: list[int | None] | None = None) -> list[Gpu]:
    numa = numa or [None] * len(groups)
    return [Gpu(i, f"{host}-{i}", model, 81920, numa[i], g) for i, g in enumerate(groups)]


def host(hid: str, gpu_list: list[Gpu] | None = None, **kw) -> Host:
    defaults = dict(name=hid, cpu_cores=64, memory_gib=512)
    return Host(id=hid, gpus=gpu_list if gpu_list is not None else parse_fake_gpus("8xA100", seed=hid), **{**defaults, **kw})


def used(h: Host, *indices: int) -> Allocation:
    return Allocation(h.id, tuple(h.gpus[i].uuid for i in indices))


def test_small_requests_fill_the_fullest_host_so_whole_hosts_stay_free():
    a, b, c = host("a"), host("b"), host("c")
    fleet = FleetState([a, b, c], [used(b, 0, 1, 2, 3, 4, 5)])  # b: 2 free
    assert place(fleet, PlacementRequest(gpu_count=1)).host_id == "b"
    assert place(fleet, PlacementRequest(gpu_count=8)).host_id == "a"


def test_small_work_goes_to_the_busiest_host_so_a_lightly_used_one_drains_whole():
    # a and b both have 4 free, but a runs one 4-GPU job and b four 1-GPU jobs.
    a, b = host("a"), host("b")
    big = used(a, 0, 1, 2, 3)
    fleet = FleetState([a, b], [big, used(b, 0), used(b, 1), used(b, 2), used(b, 3)])
    assert first_fit(fleet, PlacementRequest(gpu_count=1)).host_id == "a"  # plain best fit too (fleet order)
    small = PlacementRequest(gpu_count=1)
    placement = place(fleet, small)
    assert placement.host_id == "b"
    fleet.allocate(placement.allocation(small))
    fleet.release(big)  # a's only job ends: a is whole again, so an 8-GPU request fits
    assert place(fleet, PlacementRequest(gpu_count=8)).host_id == "a"
    # under first fit the 1-GPU job would sit on a and no host could take 8 GPUs
    ff = FleetState([a, b], [big, used(b, 0), used(b, 1), used(b, 2), used(b, 3)])
    ff.allocate(first_fit(ff, small).allocation(small))
    ff.release(big)
    assert first_fit(ff, PlacementRequest(gpu_count=8)) is None


def test_partly_used_hosts_are_filled_before_an_idle_host_is_broken():
    idle, lone = host("idle"), host("lone")
    fleet = FleetState([idle, lone], [used(lone, 0)])  # lone: 7 free, one job
    assert place(fleet, PlacementRequest(gpu_count=4)).host_id == "lone"
    assert place(fleet, PlacementRequest(gpu_count=8)).host_id == "idle"


def test_jobs_count_live_gpu_allocations_through_allocate_release_copy_and_rebuild():
    h = host("h")
    one, two, cpu_only = used(h, 0), used(h, 1, 2), Allocation("h", (), 4, 16)
    fleet = FleetState([h], [one, cpu_only])
    assert fleet.host("h").jobs == 1  # CPU-only work holds no GPU
    fleet.allocate(two)
    copy = fleet.copy()
    assert fleet.host("h").jobs == copy.host("h").jobs == 2
    fleet.release(one)
    fleet.release(one)  # a second release of the same GPUs changes nothing
    assert fleet.host("h").jobs == 1 and copy.host("h").jobs == 2
    assert FleetState([h], [two]).host("h").jobs == 1


def test_packing_outranks_topology_between_hosts():
    tight = host("tight", gpus("tight", [0, 0, 0, 1, 1, 1]))
    roomy = host("roomy", gpus("roomy", [0, 0, 0, 0, 1, 1, 1, 1]))
    # tight keeps one free GPU in each group: 2 free, split; roomy has 4 free in one group
    fleet = FleetState([roomy, tight], [used(tight, 0, 1, 3, 4), used(roomy, 4, 5, 6, 7)])
    assert place(fleet, PlacementRequest(gpu_count=2)).host_id == "tight"


def test_among_equally_packed_hosts_one_with_an_nvlink_group_wins():
    split = host("split", gpus("split", [0, 1]))
    linked = host("linked", gpus("linked", [0, 0]))
    fleet = FleetState([split, linked])
    assert place(fleet, PlacementRequest(gpu_count=2)).host_id == "linked"


def test_multi_gpu_stays_in_the_smallest_nvlink_group_that_fits():
    h = host("h", gpus("h", [0, 0, 0, 0, 1, 1, 1, 1]))
    fleet = FleetState([h], [used(h, 0, 1)])  # group 0: 2 free, group 1: 4 free
    assert place(fleet, PlacementRequest(gpu_count=2)).gpu_uuids == ("h-2", "h-3")
    assert place(fleet, PlacementRequest(gpu_count=4)).gpu_uuids == ("h-4", "h-5", "h-6", "h-7")


def test_single_gpu_takes_the_leftover_so_a_whole_group_stays_free():
    h = host("h", gpus("h", [0, 0, 0, 0, 1, 1, 1, 1]))
    fleet = FleetState([h], [used(h, 4, 5, 6)])
    assert place(fleet, PlacementRequest(gpu_count=1)).gpu_uuids == ("h-7",)


def test_numa_node_is_the_fallback_when_nvlink_is_unknown():
    h = host("h", gpus("h", [None] * 4, numa=[0, 1, 1, 0]))
    fleet = FleetState([h], [used(h, 0)])
    assert place(fleet, PlacementRequest(gpu_count=2)).gpu_uuids == ("h-1", "h-2")


def test_an_nvswitch_box_still_prefers_one_numa_node():
    h = host("h", gpus("h", [0] * 8, numa=[0, 0, 0, 0, 1, 1, 1, 1]))
    fleet = FleetState([h], [used(h, 0)])
    assert place(fleet, PlacementRequest(gpu_count=3)).gpu_uuids == ("h-1", "h-2", "h-3")


def test_a_spread_placement_spans_as_few_groups_as_possible():
    h = host("h", gpus("h", [0, 0, 0, 0, 1, 1, 1, 1]))
    fleet = FleetState([h], [used(h, 4, 5)])  # group 0: 4 free, group 1: 2 free
    chosen = place(fleet, PlacementRequest(gpu_count=5)).gpu_uuids
    assert set(chosen) >= {"h-0", "h-1", "h-2", "h-3"} and len(chosen) == 5


@pytest.mark.parametrize("status", [HostStatus.CORDONED, HostStatus.DRAINING, HostStatus.OFFLINE])
def test_hosts_that_do_not_accept_work_get_nothing_new(status):
    fleet = FleetState([host("a", status=status)])
    assert place(fleet, PlacementRequest(gpu_count=1)) is None
    assert place(fleet, PlacementRequest(gpu_count=0, pin_host_id="a")) is None


def test_filters_model_labels_cpu_and_memory():
    a = host("a", parse_fake_gpus("2xH100", seed="a"), labels={"zone": "b"})
    b = host("b", cpu_cores=4, memory_gib=16, labels={"zone": "a"})
    fleet = FleetState([a, b])
    assert place(fleet, PlacementRequest(gpu_count=1, gpu_model="H100")).host_id == "a"
    assert place(fleet, PlacementRequest(gpu_count=1, labels={"zone": "a"})).host_id == "b"
    assert place(fleet, PlacementRequest(gpu_count=1, labels={"zone": "a"}, cpu_cores=8)) is None
    assert place(fleet, PlacementRequest(gpu_count=1, gpu_model="A100", memory_gib=32)) is None
    assert place(fleet, PlacementRequest(gpu_count=4, gpu_model="H100")) is None


def test_a_pinned_request_goes_to_its_host_or_nowhere():
    a, b = host("a"), host("b")
    fleet = FleetState([a, b], [used(b, *range(7))])
    assert place(fleet, PlacementRequest(gpu_count=2, pin_host_id="a")).host_id == "a"
    assert place(fleet, PlacementRequest(gpu_count=2, pin_host_id="b")) is None
    assert place(fleet, PlacementRequest(gpu_count=1, pin_host_id="gone")) is None


def test_any_model_requests_use_the_abundant_model_first():
    scarce = host("scarce", parse_fake_gpus("1xA100", seed="s"))
    plenty = host("plenty", parse_fake_gpus("1xH100,1xH100", seed="p"))
    other = host("other", parse_fake_gpus("1xH100", seed="o"))
    fleet = FleetState([scarce, plenty, other])
    assert place(fleet, PlacementRequest(gpu_count=1)).host_id == "other"


def test_cpu_only_work_avoids_gpu_hosts():
    fleet = FleetState([host("gpu"), host("cpu", [])])
    assert place(fleet, PlacementRequest(gpu_count=0, cpu_cores=4)).host_id == "cpu"


def test_unhealthy_gpus_are_never_placed():
    h = host("h", [Gpu(0, "bad", "A100", 0, healthy=False), Gpu(1, "good", "A100", 0)])
    fleet = FleetState([h])
    assert place(fleet, PlacementRequest(gpu_count=1)).gpu_uuids == ("good",)
    assert place(fleet, PlacementRequest(gpu_count=2)) is None


def test_allocating_a_gpu_twice_is_a_conflict_and_release_gives_it_back():
    h = host("h", gpus("h", [0, 0]))
    fleet = FleetState([h])
    fleet.allocate(used(h, 0))
    with pytest.raises(Conflict):
        fleet.allocate(used(h, 0, 1))
    assert fleet.host("h").free_count() == 1  # the failed allocate changed nothing
    fleet.release(used(h, 0))
    assert fleet.gpu_counts() == {"A100": (2, 2)}


def test_first_fit_takes_the_first_host_in_order():
    a, b = host("a"), host("b")
    fleet = FleetState([a, b], [used(b, *range(6))])
    assert first_fit(fleet, PlacementRequest(gpu_count=1)).host_id == "a"
    assert place(fleet, PlacementRequest(gpu_count=1)).host_id == "b"


@pytest.mark.parametrize("kwargs", [{"gpu_count": 9}, {"gpu_count": -1}, {"cpu_cores": -1}, {"memory_gib": -2}])
def test_invalid_requests_are_rejected(kwargs):
    with pytest.raises(InvalidInput):
        PlacementRequest(**kwargs)


def test_a_pinned_restart_gets_the_gpus_it_had_when_they_are_free():
    a = host("a")
    mine = (a.gpus[5].uuid, a.gpus[6].uuid)  # not what packing would pick (0, 1)
    fleet = FleetState([a], [used(a, 2)])
    request = PlacementRequest(gpu_count=2, pin_host_id="a", prefer_gpu_uuids=mine)
    assert place(fleet, request).gpu_uuids == mine
    # One of them busy, a different count, or another model asked for: chosen as usual.
    busy = FleetState([a], [used(a, 6)])
    assert set(place(busy, request).gpu_uuids) != set(mine)
    assert len(place(fleet, PlacementRequest(gpu_count=3, pin_host_id="a", prefer_gpu_uuids=mine)).gpu_uuids) == 3
    assert place(fleet, PlacementRequest(gpu_count=2, gpu_model="H100", pin_host_id="a", prefer_gpu_uuids=mine)) is None
