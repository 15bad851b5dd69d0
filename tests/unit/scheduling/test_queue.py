"""The wait queue: FIFO, conservative backfill, positions."""

from __future__ import annotations

from remotegpu.domain.fleet.models import Host, parse_fake_gpus
from remotegpu.domain.scheduling import Allocation, FleetState, PlacementRequest, QueuedRequest, plan_queue


def host(hid: str, spec: str = "4xA100", **kw) -> Host:
    return Host(id=hid, name=hid, cpu_cores=64, memory_gib=512, gpus=parse_fake_gpus(spec, seed=hid), **kw)


def q(rid: str, **kw) -> QueuedRequest:
    return QueuedRequest(rid, PlacementRequest(**kw))


def started_ids(plan) -> list[str]:
    return [rid for rid, _ in plan.started]


def test_first_come_first_served_with_positions_for_the_rest():
    fleet = FleetState([host("a")])
    plan = plan_queue(fleet, [q(f"r{i}", gpu_count=1) for i in range(6)])
    assert started_ids(plan) == ["r0", "r1", "r2", "r3"]
    assert plan.positions == {"r4": 1, "r5": 2}
    assert len({u for _, p in plan.started for u in p.gpu_uuids}) == 4
    assert fleet.host("a").free_count() == 0  # started work is allocated in the fleet


def test_a_blocked_head_holds_back_smaller_work_that_could_delay_it():
    a = host("a")
    fleet = FleetState([a], [Allocation("a", (a.gpus[0].uuid,))])
    plan = plan_queue(fleet, [q("big", gpu_count=4), q("small", gpu_count=1)])
    assert plan.started == []
    assert plan.positions == {"big": 1, "small": 2}


def test_later_work_backfills_hosts_the_head_can_never_use():
    a, h = host("a"), host("h", "2xH100")
    fleet = FleetState([a, h], [Allocation("a", (a.gpus[0].uuid,))])
    plan = plan_queue(
        fleet,
        [q("big-a100", gpu_count=4, gpu_model="A100"), q("a100", gpu_count=1, gpu_model="A100"), q("h100", gpu_count=1, gpu_model="H100")],
    )
    assert started_ids(plan) == ["h100"]
    assert plan.positions == {"big-a100": 1, "a100": 2}


def test_a_pinned_head_reserves_only_its_own_host():
    a, b = host("a"), host("b")
    fleet = FleetState([a, b], [Allocation("a", tuple(g.uuid for g in a.gpus))])
    plan = plan_queue(fleet, [q("restart", gpu_count=1, pin_host_id="a"), q("new", gpu_count=2)])
    assert started_ids(plan) == ["new"]
    assert plan.started[0][1].host_id == "b"
    assert plan.positions == {"restart": 1}


def test_a_request_no_host_could_ever_hold_blocks_nobody_and_is_reported():
    fleet = FleetState([host("a")])
    plan = plan_queue(fleet, [q("v100", gpu_count=1, gpu_model="V100"), q("too-big", gpu_count=8), q("ok", gpu_count=1)])
    assert started_ids(plan) == ["ok"]
    assert plan.unschedulable == ["v100", "too-big"]
    assert plan.positions == {"v100": 1, "too-big": 2}


def test_freed_gpus_go_to_the_queue_in_order():
    a = host("a")
    running = Allocation("a", tuple(g.uuid for g in a.gpus))
    fleet = FleetState([a], [running])
    queue = [q(f"r{i}", gpu_count=1) for i in range(3)]
    assert plan_queue(fleet.copy(), queue).positions == {"r0": 1, "r1": 2, "r2": 3}
    fleet.release(Allocation("a", running.gpu_uuids[:2]))
    plan = plan_queue(fleet, queue)
    assert started_ids(plan) == ["r0", "r1"]
    assert plan.positions == {"r2": 1}
