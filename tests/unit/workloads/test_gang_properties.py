"""Gang placement and the job queue (hypothesis): never a partial allocation, a job
that fits is placed, a big job eventually runs under a stream of small ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotegpu.domain.fleet.models import Gpu, Host, HostStatus
from remotegpu.domain.scheduling import FleetState, PlacementRequest, place
from remotegpu.domain.workloads.gang import (
    STARVATION_SECONDS,
    QueuedGang,
    allocate_gang,
    describe_gang_wait,
    place_gang,
    plan_gangs,
)

MODELS = ["A100", "H100"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@st.composite
def fleets(draw) -> list[Host]:
    hosts = []
    for h in range(draw(st.integers(1, 6))):
        model = draw(st.sampled_from(MODELS))
        gpus = [Gpu(index=i, uuid=f"h{h}-g{i}", model=model, memory_mib=81920) for i in range(draw(st.integers(0, 8)))]
        hosts.append(Host(id=f"h{h}", name=f"h{h}", status=draw(st.sampled_from([HostStatus.READY] * 3 + [HostStatus.CORDONED])),
                          cpu_cores=draw(st.integers(4, 64)), memory_gib=draw(st.integers(16, 256)), gpus=gpus))
    return hosts


requests = st.builds(
    PlacementRequest, gpu_count=st.integers(0, 8), gpu_model=st.sampled_from([None, *MODELS]),
    cpu_cores=st.integers(1, 16), memory_gib=st.integers(1, 64),
)
# Some live work already on the fleet: (request, how many nodes) placed before the check.
preloads = st.lists(st.tuples(requests, st.integers(1, 3)), max_size=6)


def _fleet(hosts, preload) -> FleetState:
    fleet = FleetState(hosts)
    for request, nodes in preload:
        placements = place_gang(fleet, request, nodes)
        if placements:
            allocate_gang(fleet, request, placements)
    return fleet


def _free_gpus(fleet: FleetState) -> dict[str, set[str]]:
    return {h.id: set(h.free_uuids) for h in fleet.hosts()}


def _free_cpu(fleet: FleetState) -> dict[str, tuple[int, int]]:
    return {h.id: (h.cpu_free, h.memory_free) for h in fleet.hosts()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), preloads, requests, st.integers(1, 6))
def test_a_gang_is_placed_whole_or_not_at_all(hosts, preload, request, nodes):
    fleet = _fleet(hosts, preload)
    before_gpus, before_cpu = _free_gpus(fleet), _free_cpu(fleet)
    placements = place_gang(fleet, request, nodes)
    # Looking never changes anything.
    assert _free_gpus(fleet) == before_gpus and _free_cpu(fleet) == before_cpu
    if placements is None:
        return
    assert len(placements) == nodes
    assert len({p.host_id for p in placements}) == nodes  # one node per host
    for p in placements:
        assert len(p.gpu_uuids) == request.gpu_count
        assert set(p.gpu_uuids) <= before_gpus[p.host_id]
    allocate_gang(fleet, request, placements)
    after = _free_gpus(fleet)
    for p in placements:
        assert after[p.host_id] == before_gpus[p.host_id] - set(p.gpu_uuids)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), preloads, requests, st.integers(1, 6))
def test_a_gang_that_fits_is_placed(hosts, preload, request, nodes):
    fleet = _fleet(hosts, preload)
    # Independently: on how many hosts would one node fit right now?
    fitting = [h.id for h in fleet.hosts() if place(fleet, replace(request, pin_host_id=h.id)) is not None]
    placements = place_gang(fleet, request, nodes)
    assert (placements is not None) == (len(fitting) >= nodes)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), preloads, st.lists(st.tuples(requests, st.integers(1, 4), st.integers(-2, 2)), min_size=1, max_size=8))
def test_the_queue_never_holds_a_partial_gang(hosts, preload, jobs):
    fleet = _fleet(hosts, preload)
    before = _free_gpus(fleet)
    queued = [QueuedGang(f"j{i}", r, n, p, T0 + timedelta(seconds=i)) for i, (r, n, p) in enumerate(jobs)]
    plan = plan_gangs(fleet, queued, T0 + timedelta(seconds=1000))
    by_id = {q.id: q for q in queued}
    taken: set[str] = set()
    for job_id, placements in plan.started:
        assert len(placements) == by_id[job_id].nodes
        assert len({p.host_id for p in placements}) == len(placements)
        for p in placements:
            assert not (set(p.gpu_uuids) & taken)  # never a GPU twice
            assert set(p.gpu_uuids) <= before[p.host_id]
            taken |= set(p.gpu_uuids)
    # every job is either started (whole) or waiting with a reason
    assert {j for j, _ in plan.started} | set(plan.waiting) == set(by_id)
    assert not ({j for j, _ in plan.started} & set(plan.waiting))
    after = _free_gpus(fleet)
    assert sum(len(v) for v in before.values()) - sum(len(v) for v in after.values()) == len(taken)


def test_reason_names_nodes_and_largest_free():
    hosts = [Host(id=f"h{h}", name=f"h{h}", cpu_cores=32, memory_gib=128,
                  gpus=[Gpu(index=i, uuid=f"h{h}-g{i}", model="A100", memory_mib=1) for i in range(4)]) for h in range(2)]
    fleet = FleetState(hosts)
    request = PlacementRequest(gpu_count=4, gpu_model="A100", cpu_cores=1, memory_gib=1)
    allocate_gang(fleet, request, place_gang(fleet, request, 1))
    assert place_gang(fleet, request, 2) is None
    assert describe_gang_wait(fleet, request, 2) == "needs 2 nodes × 4 A100; largest free: 1 node"
    plan = plan_gangs(fleet, [QueuedGang("big", request, 2, 0, T0)], T0)
    assert plan.waiting["big"] == "needs 2 nodes × 4 A100; largest free: 1 node"
    assert plan.started == []


# --- no starvation: a stream of small jobs never keeps a big one out for ever ---------------------

small_streams = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 6)),  # (GPUs, run time in ticks) arriving each tick
    min_size=60, max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4), small_streams, st.integers(0, 2), st.integers(-5, 0))
def test_a_big_job_eventually_runs_under_a_stream_of_small_ones(hosts_n, stream, per_tick, big_priority):
    """Hosts of 4 GPUs; a big job wants every host whole; small 1-node jobs (higher
    priority than it, or equal) keep arriving every tick and would always fit
    somewhere. The big one must start within STARVATION_SECONDS + the longest small run."""
    tick = 60  # seconds
    hosts = [Host(id=f"h{h}", name=f"h{h}", cpu_cores=64, memory_gib=256,
                  gpus=[Gpu(index=i, uuid=f"h{h}-g{i}", model="A100", memory_mib=1) for i in range(4)]) for h in range(hosts_n)]
    fleet = FleetState(hosts)
    big = QueuedGang("big", PlacementRequest(gpu_count=4, gpu_model="A100", cpu_cores=1, memory_gib=1), hosts_n, big_priority, T0)
    queue: list[QueuedGang] = [big]
    running: list[tuple[int, PlacementRequest, list]] = []  # (ends at tick, request, placements)
    durations: dict[str, int] = {}
    started_at = None
    longest = max(d for _, d in stream)
    for t, (gpus, duration) in enumerate(stream):
        now = T0 + timedelta(seconds=t * tick)
        for end, request, placements in [r for r in running if r[0] <= t]:
            for p in placements:
                fleet.release(p.allocation(request))
            running.remove((end, request, placements))
        for k in range(per_tick + 1):
            job_id = f"s{t}-{k}"
            queue.append(QueuedGang(job_id, PlacementRequest(gpu_count=gpus, gpu_model="A100", cpu_cores=1, memory_gib=1),
                                    1, 1, now))
            durations[job_id] = duration
        plan = plan_gangs(fleet, queue, now)
        by_id = {q.id: q for q in queue}
        for job_id, placements in plan.started:
            if job_id == "big":
                started_at = t
                assert len(placements) == hosts_n
            else:
                running.append((t + durations[job_id], by_id[job_id].request, placements))
        queue = [q for q in queue if q.id not in {j for j, _ in plan.started}]
        if started_at is not None:
            break
    assert started_at is not None, "the big job starved"
    assert started_at * tick <= STARVATION_SECONDS + (longest + 1) * tick
