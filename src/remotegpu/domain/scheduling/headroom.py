"""What can start now, what can never fit, and what a waiting request waits for.

Pure functions over a ``FleetState`` (overcommit already applied in its capacities),
shared by the create form's capacity hints (``GET /gpu-types``), the 409 at create
for a request no host could ever hold, and the queued environment's status message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from remotegpu.domain.fleet.models import Host
from remotegpu.domain.scheduling.capacity import FleetState, HostCapacity
from remotegpu.domain.scheduling.models import PlacementRequest
from remotegpu.domain.scheduling.placement import place
from remotegpu.domain.scheduling.queue import QueuedRequest, plan_queue


def ever_fits(hosts: Iterable[Host], request: PlacementRequest) -> bool:
    """Could some host (whatever its status or current use) ever hold the request?

    Cordoned and offline hosts count: they may come back. A fleet with no hosts yet,
    or with a host whose agent never reported (its size is unknown), answers True:
    the request waits for that host."""
    hosts = list(hosts)
    if not hosts or any(h.last_heartbeat_at is None for h in hosts):
        return True
    for host in hosts:
        capacity = HostCapacity(host)
        capacity.schedulable = True  # ignore status: only size matters here
        if capacity.could_ever_fit(request):
            return True
    return False


def largest_host(hosts: Iterable[Host], gpu_model: str | None, gpu_count: int) -> tuple[int, int]:
    """(CPU cores, GiB memory) schedulable on the biggest host with ``gpu_count`` of the model."""
    best = (0, 0)
    for host in hosts:
        capacity = HostCapacity(host)
        totals = capacity.totals
        if gpu_count and (totals.get(gpu_model, 0) if gpu_model else max(totals.values(), default=0)) < gpu_count:
            continue
        best = max(best, (capacity.cpu_capacity, capacity.memory_capacity))
    return best


def _gpu_phrase(request: PlacementRequest) -> str:
    if not request.gpu_count:
        return ""
    return f" with {request.gpu_count} × {request.gpu_model or 'GPU'}"


def describe_wait(fleet: FleetState, request: PlacementRequest) -> str:
    """Why ``request`` is not placed now, in words a user can act on, e.g.
    "waiting for 4 vCPU with 1 × A100; most free on such a host: 2 vCPU"."""
    hosts = [h for h in fleet.hosts() if h.matches(request)]
    need = f"{request.cpu_cores} vCPU, {request.memory_gib} GiB{_gpu_phrase(request)}"
    if not hosts:
        if request.pin_host_id is not None:
            return f"waiting for its host to accept work again (needs {need})"
        return f"waiting for a host that accepts work (needs {need})"
    if request.gpu_count:
        with_gpus = [h for h in hosts if h.models_for(request)]
        if not with_gpus:
            free = max((h.free_count(request.gpu_model) for h in hosts), default=0)
            return f"waiting for {request.gpu_count} free × {request.gpu_model or 'GPU'} on one host (most free: {free})"
        hosts = with_gpus
    most_cpu = max(h.cpu_free for h in hosts)
    most_memory = max(h.memory_free for h in hosts)
    if most_cpu < request.cpu_cores:
        return f"waiting for {request.cpu_cores} vCPU{_gpu_phrase(request)}; most free on such a host: {max(most_cpu, 0)} vCPU"
    if most_memory < request.memory_gib:
        return f"waiting for {request.memory_gib} GiB memory{_gpu_phrase(request)}; most free on such a host: {max(most_memory, 0)} GiB"
    if not any(h.fits_resources(request) for h in hosts):
        return f"waiting for {need} on one host"
    return f"waiting behind earlier requests in the queue (needs {need})"


@dataclass(frozen=True)
class ModelHeadroom:
    """One GPU model for a request being composed (its GPU count, CPU and memory)."""

    model: str
    total: int  # healthy GPUs of the model on hosts that accept work
    free: int  # of those, not allocated
    startable_now: bool  # the request with this model would start at once (queue respected)
    # Most CPU / memory free now on one such host with the request's GPUs free (0: none)
    cpu_cores_free: int
    memory_gib_free: int
    # Biggest CPU / memory any host with the request's GPUs of the model offers when empty
    max_cpu_cores: int
    max_memory_gib: int
    ever_fits: bool  # some host of the model could hold the request when empty


@dataclass(frozen=True)
class NewcomerView:
    """The fleet as a request created now would find it: the queue planned first, and
    the hosts its waiting requests hold back. Depends only on the fleet snapshot and
    the queue, so a reader may build it once per snapshot and answer many requests."""

    fleet: FleetState  # after the queue's planned starts; not to be mutated
    reserved: frozenset[str]
    counts: dict[str, tuple[int, int]]  # model → (total, free) on hosts that accept work, before the plan
    hosts: tuple[Host, ...]


def newcomer_view(fleet: FleetState, queued: Sequence[QueuedRequest] = (), hosts: Iterable[Host] = ()) -> NewcomerView:
    """Plan ``queued`` on a copy of ``fleet`` (``fleet`` itself is not changed)."""
    planned = fleet.copy()
    reserved = _reserved(planned, queued)
    return NewcomerView(planned, frozenset(reserved), fleet.gpu_counts(), tuple(hosts))


def headroom_for(view: NewcomerView, gpu_count: int, cpu_cores: int, memory_gib: int) -> list[ModelHeadroom]:
    """Per GPU model: can ``gpu_count`` of it with ``cpu_cores``/``memory_gib`` start now?"""
    out = []
    for model in sorted(view.counts):  # models on hosts that accept work, as the form offers them
        total, free = view.counts[model]
        request = PlacementRequest(gpu_count=gpu_count, gpu_model=model, cpu_cores=cpu_cores, memory_gib=memory_gib)
        fitting = [
            h for h in view.fleet.hosts()
            if h.schedulable and h.id not in view.reserved and h.totals.get(model) and h.free_count(model) >= gpu_count
        ]
        max_cpu, max_memory = largest_host(view.hosts, model, gpu_count)
        out.append(ModelHeadroom(
            model=model, total=total, free=free,
            startable_now=place(view.fleet, request, exclude=view.reserved) is not None,
            cpu_cores_free=max((max(h.cpu_free, 0) for h in fitting), default=0),
            memory_gib_free=max((max(h.memory_free, 0) for h in fitting), default=0),
            max_cpu_cores=max_cpu, max_memory_gib=max_memory,
            ever_fits=ever_fits(view.hosts, request) if view.hosts else True,
        ))
    return out


def model_headroom(
    fleet: FleetState, gpu_count: int, cpu_cores: int, memory_gib: int, queued: Sequence[QueuedRequest] = (),
    hosts: Iterable[Host] = (),
) -> list[ModelHeadroom]:
    """``headroom_for`` on a fresh ``newcomer_view``: "now" respects the queue, exactly
    as a create would find the fleet."""
    return headroom_for(newcomer_view(fleet, queued, hosts), gpu_count, cpu_cores, memory_gib)


def _reserved(fleet: FleetState, queued: Sequence[QueuedRequest]) -> set[str]:
    """Plan the queue on ``fleet`` (mutating it) and return the hosts its waiting
    requests hold back from newcomers (see ``plan_queue``'s rule)."""
    if not queued:
        return set()
    plan = plan_queue(fleet, queued)
    waiting = {q.id: q.request for q in queued if q.id in plan.positions}
    reserved: set[str] = set()
    seen: set[tuple] = set()  # a queue repeats a few shapes: each is checked against the hosts once
    hosts = list(fleet.hosts())
    for request in waiting.values():
        shape = (request.gpu_count, request.gpu_model, request.cpu_cores, request.memory_gib, request.pin_host_id,
                 tuple(sorted(request.labels.items())))
        if shape in seen:
            continue
        seen.add(shape)
        reserved |= {h.id for h in hosts if h.id not in reserved and h.could_ever_fit(request)}
    return reserved
