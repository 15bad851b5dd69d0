"""Placement invariants over random fleets and request sequences (hypothesis).

The checks recompute everything from the hosts and an independent ledger of
allocations, so they do not trust FleetState's own bookkeeping.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotegpu.domain.fleet.models import Gpu, Host, HostStatus
from remotegpu.domain.scheduling import Allocation, FleetState, PlacementRequest, place
from remotegpu.domain.shared.errors import QuotaExceeded
from remotegpu.domain.workspaces.quota import Quota, Usage

MODELS = ["A100", "H100"]


@st.composite
def hosts(draw) -> list[Host]:
    result = []
    for h in range(draw(st.integers(1, 6))):
        gpus = []
        for model in MODELS:
            for _ in range(draw(st.integers(0, 8))):
                i = len(gpus)
                gpus.append(
                    Gpu(
                        index=i,
                        uuid=f"h{h}-gpu{i}",
                        model=model,
                        memory_mib=81920,
                        numa_node=draw(st.sampled_from([None, 0, 1])),
                        nvlink_group=draw(st.sampled_from([None, 0, 1, 2])),
                        healthy=draw(st.sampled_from([True, True, True, False])),
                    )
                )
        result.append(
            Host(
                id=f"h{h}",
                name=f"host-{h}",
                status=draw(st.sampled_from(list(HostStatus))),
                labels={"zone": draw(st.sampled_from(["a", "b"]))},
                cpu_cores=draw(st.integers(0, 64)),
                memory_gib=draw(st.integers(0, 256)),
                gpus=gpus,
            )
        )
    return result


requests = st.builds(
    PlacementRequest,
    gpu_count=st.integers(0, 8),
    gpu_model=st.sampled_from([None, *MODELS, "V100"]),
    cpu_cores=st.integers(0, 32),
    memory_gib=st.integers(0, 128),
    labels=st.sampled_from([{}, {"zone": "a"}]),
    pin_host_id=st.sampled_from([None, None, None, "h0", "h1"]),
)
operations = st.lists(st.one_of(requests, st.integers(0, 50)), min_size=1, max_size=40)


def _free(host: Host, used: set[str], model: str) -> list[Gpu]:
    return [g for g in host.gpus if g.model == model and g.healthy and g.uuid not in used]


def _feasible(host: Host, ledger: list[Allocation], used: set[str], request: PlacementRequest) -> list[tuple[str, int]]:
    """(model, free count) pairs under which ``request`` fits ``host`` right now."""
    if host.status is not HostStatus.READY:
        return []
    if request.pin_host_id not in (None, host.id):
        return []
    if any(host.labels.get(k) != v for k, v in request.labels.items()):
        return []
    mine = [a for a in ledger if a.host_id == host.id]
    if host.cpu_cores - sum(a.cpu_cores for a in mine) < request.cpu_cores:
        return []
    if host.memory_gib - sum(a.memory_gib for a in mine) < request.memory_gib:
        return []
    if request.gpu_count == 0:
        return [("", 0)]
    models = [request.gpu_model] if request.gpu_model else MODELS
    return [(m, len(_free(host, used, m))) for m in models if len(_free(host, used, m)) >= request.gpu_count]


def _check_and_place(fleet: FleetState, fleet_hosts: list[Host], ledger: list[Allocation], request: PlacementRequest):
    by_id = {h.id: h for h in fleet_hosts}
    used = {u for a in ledger for u in a.gpu_uuids}
    placement = place(fleet, request)
    options = {h.id: _feasible(h, ledger, used, request) for h in fleet_hosts}
    if placement is None:
        assert not any(options.values()), "place gave up although a host fits"
        return None
    host = by_id[placement.host_id]
    assert options[host.id], "placed on a host that does not fit (status, pin, labels, CPU, memory or GPUs)"
    assert host.status is HostStatus.READY
    gpus = [g for g in host.gpus if g.uuid in placement.gpu_uuids]
    assert len(gpus) == len(placement.gpu_uuids) == request.gpu_count
    assert not used & set(placement.gpu_uuids), "a GPU was handed out twice"
    assert all(g.healthy for g in gpus)
    if gpus:
        model = gpus[0].model
        assert all(g.model == model for g in gpus)
        assert request.gpu_model in (None, model)
        if request.pin_host_id is None:
            # busiest host first (most live GPU allocations), then best fit among those
            jobs = {h: sum(1 for a in ledger if a.host_id == h and a.gpu_uuids) for h in options}
            busiest = max(jobs[h] for h, opts in options.items() if opts)
            assert jobs[host.id] == busiest, "not the busiest host that fits"
            fewest = min(free for h, opts in options.items() if jobs[h] == busiest for _, free in opts)
            assert len(_free(host, used, model)) == fewest, "not the best-fit host among the busiest"
        groups: dict[int, int] = {}
        for g in _free(host, used, model):
            if g.nvlink_group is not None:
                groups[g.nvlink_group] = groups.get(g.nvlink_group, 0) + 1
        if request.gpu_count > 1 and any(n >= request.gpu_count for n in groups.values()):
            assert len({g.nvlink_group for g in gpus}) == 1, "split across NVLink groups needlessly"
            assert gpus[0].nvlink_group is not None
    allocation = placement.allocation(request)
    fleet.allocate(allocation)
    ledger.append(allocation)
    return allocation


def _assert_within_capacity(fleet_hosts: list[Host], ledger: list[Allocation]) -> None:
    uuids = [u for a in ledger for u in a.gpu_uuids]
    assert len(uuids) == len(set(uuids))
    for host in fleet_hosts:
        mine = [a for a in ledger if a.host_id == host.id]
        assert sum(a.cpu_cores for a in mine) <= host.cpu_cores
        assert sum(a.memory_gib for a in mine) <= host.memory_gib
        assert sum(len(a.gpu_uuids) for a in mine) <= sum(g.healthy for g in host.gpus)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet_hosts=hosts(), ops=operations)
def test_placements_never_exceed_capacity_nor_reuse_a_gpu(fleet_hosts, ops):
    fleet = FleetState(fleet_hosts)
    ledger: list[Allocation] = []
    for op in ops:
        if isinstance(op, int):
            if ledger:
                fleet.release(ledger.pop(op % len(ledger)))
        else:
            _check_and_place(fleet, fleet_hosts, ledger, op)
        _assert_within_capacity(fleet_hosts, ledger)


@settings(max_examples=150, deadline=None)
@given(fleet_hosts=hosts(), ops=operations)
def test_a_snapshot_rebuilt_from_allocations_places_like_the_live_one(fleet_hosts, ops):
    fleet = FleetState(fleet_hosts)
    ledger: list[Allocation] = []
    for op in ops:
        if isinstance(op, int):
            if ledger:
                fleet.release(ledger.pop(op % len(ledger)))
            continue
        rebuilt = FleetState(fleet_hosts, ledger)
        assert place(rebuilt, op) == place(fleet, op)
        _check_and_place(fleet, fleet_hosts, ledger, op)


quotas = st.builds(
    Quota,
    max_gpus=st.none() | st.integers(0, 10),
    max_environments=st.none() | st.integers(0, 5),
    max_cpu_cores=st.none() | st.integers(0, 64),
    max_memory_gib=st.none() | st.integers(0, 256),
)


@settings(max_examples=200, deadline=None)
@given(fleet_hosts=hosts(), ops=operations, quota=quotas)
def test_a_quota_guarded_sequence_never_exceeds_the_quota(fleet_hosts, ops, quota):
    fleet = FleetState(fleet_hosts)
    ledger: list[Allocation] = []

    def usage() -> Usage:
        total = Usage()
        for a in ledger:
            total = total + Usage(gpus=len(a.gpu_uuids), environments=1, cpu_cores=a.cpu_cores, memory_gib=a.memory_gib)
        return total

    for op in ops:
        if isinstance(op, int):
            if ledger:
                fleet.release(ledger.pop(op % len(ledger)))
            continue
        wanted = Usage(gpus=op.gpu_count, environments=1, cpu_cores=op.cpu_cores, memory_gib=op.memory_gib)
        try:
            quota.check_request(usage(), wanted)
        except QuotaExceeded:
            continue
        _check_and_place(fleet, fleet_hosts, ledger, op)
        held = usage()
        for resource in ("gpus", "environments", "cpu_cores", "memory_gib"):
            limit = quota.limit(resource)
            assert limit is None or getattr(held, resource) <= limit, resource
        _assert_within_capacity(fleet_hosts, ledger)
