"""Overcommit in the scheduler's capacity, and the capacity answers users see:
startable now, never fits, and what a waiting request waits for."""

from __future__ import annotations

import pytest

from datetime import datetime, timezone

from remotegpu.domain.fleet.models import Gpu, Host, HostStatus
from remotegpu.domain.scheduling import Allocation, FleetState, PlacementRequest, QueuedRequest, place
from remotegpu.domain.scheduling.headroom import describe_wait, ever_fits, largest_host, model_headroom
from remotegpu.domain.shared.errors import InvalidInput

A100 = "A100"


SEEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def small(name: str = "h", cores: int = 2, memory: int = 8, gpus: int = 4, **kw) -> Host:
    kw.setdefault("last_heartbeat_at", SEEN)
    return Host(
        id=name, name=name, cpu_cores=cores, memory_gib=memory,
        gpus=[Gpu(index=i, uuid=f"{name}-{i}", model=A100, memory_mib=81920) for i in range(gpus)], **kw,
    )


def one_gpu(cpu: int = 1, memory: int = 1) -> PlacementRequest:
    return PlacementRequest(gpu_count=1, gpu_model=A100, cpu_cores=cpu, memory_gib=memory)


def test_overcommit_schedules_requests_against_capacity_times_ratio():
    host = small(cpu_overcommit=2.0, memory_overcommit=1.5)
    assert (host.schedulable_cpu_cores, host.schedulable_memory_gib) == (4, 12)
    fleet = FleetState([host], [Allocation("h", ("h-0",), 1, 1), Allocation("h", ("h-1",), 1, 1), Allocation("h", ("h-2",), 1, 1)])
    assert place(fleet, one_gpu()) is not None  # 4th core only exists with overcommit
    assert place(FleetState([small()], [Allocation("h", ("h-0",), 1, 1), Allocation("h", ("h-1",), 1, 1)]), one_gpu()) is None
    assert FleetState([host]).host("h").could_ever_fit(one_gpu(cpu=4, memory=12))
    assert not FleetState([host]).host("h").could_ever_fit(one_gpu(cpu=5))


def test_overcommit_rounds_down_and_is_bounded():
    host = small(cores=3)
    host.set_overcommit(cpu=1.5)
    assert host.schedulable_cpu_cores == 4 and host.memory_overcommit == 1.0  # 4.5 → 4; memory untouched
    for bad in (0.99, 10.01, float("nan"), True, "2"):
        with pytest.raises(InvalidInput):
            host.set_overcommit(cpu=bad)
    host.set_overcommit(memory=10)
    assert host.memory_overcommit == 10.0


def test_ever_fits_ignores_current_use_and_status_but_not_size():
    hosts = [small("a", status=HostStatus.CORDONED), small("b", cores=8, gpus=0)]
    assert ever_fits(hosts, one_gpu(cpu=2))  # cordoned hosts may come back
    assert not ever_fits(hosts, one_gpu(cpu=4))  # the 8-core host has no A100
    assert ever_fits(hosts, PlacementRequest(cpu_cores=8))
    assert not ever_fits(hosts, PlacementRequest(gpu_count=8, gpu_model=A100))
    assert ever_fits([], one_gpu(cpu=64))  # no hosts yet: wait for the first one
    assert ever_fits([*hosts, Host(id="new", name="new")], one_gpu(cpu=64))  # its agent has not reported: size unknown
    assert largest_host(hosts, A100, 1) == (2, 8)


def test_describe_wait_names_what_is_missing():
    fleet = FleetState([small()], [Allocation("h", ("h-0",), 1, 1), Allocation("h", ("h-1",), 1, 1)])
    assert describe_wait(fleet, one_gpu()) == "waiting for 1 vCPU with 1 × A100; most free on such a host: 0 vCPU"
    fleet = FleetState([small()], [Allocation("h", ("h-0", "h-1", "h-2", "h-3"), 0, 0)])
    assert describe_wait(fleet, one_gpu()) == "waiting for 1 free × A100 on one host (most free: 0)"
    fleet = FleetState([small()], [Allocation("h", ("h-0",), 0, 7)])
    assert describe_wait(fleet, one_gpu(memory=2)) == "waiting for 2 GiB memory with 1 × A100; most free on such a host: 1 GiB"
    fleet = FleetState([small(status=HostStatus.CORDONED)])
    assert describe_wait(fleet, one_gpu()).startswith("waiting for a host that accepts work")


def test_model_headroom_answers_for_the_request_and_respects_the_queue():
    fleet = FleetState([small()], [Allocation("h", ("h-0",), 1, 1)])
    [now] = model_headroom(fleet, 1, 1, 1, hosts=[small()])
    assert (now.total, now.free, now.startable_now, now.cpu_cores_free, now.ever_fits) == (4, 3, True, 1, True)
    [too_big] = model_headroom(fleet, 1, 4, 16, hosts=[small()])
    assert not too_big.startable_now and not too_big.ever_fits and (too_big.max_cpu_cores, too_big.max_memory_gib) == (2, 8)
    # A queued 2-core request is ahead: the free core is not offered to a newcomer.
    queued = [QueuedRequest("q", one_gpu(cpu=2))]
    [behind] = model_headroom(fleet, 1, 1, 1, queued, hosts=[small()])
    assert not behind.startable_now and behind.ever_fits
    assert fleet.host("h").cpu_free == 1  # the caller's fleet is untouched
