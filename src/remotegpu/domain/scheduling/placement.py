"""Placement: filter hosts, score them, pick GPUs. Pure; callers persist the result.

Filter: the host accepts new work (``ready``), matches the pin and label selector,
has the GPU model with enough free GPUs, and enough free CPU and memory.

Score, best first:
1. most live GPU allocations on the host (``HostCapacity.jobs``): a host becomes
   whole again only when all of its allocations have ended, so new work goes to hosts
   that stay busy longest anyway, and lightly used hosts drain back to whole for
   8-GPU requests; idle hosts come last, so partly used hosts are always filled first;
2. fewest free GPUs of the model left after placement (best fit among those);
3. topology of the chosen GPUs: one NVLink group, else one NUMA node, else spread;
4. a host that already has the environment's image (``prefer_hosts``: no pull);
5. the host's position in the bucket (deterministic tie-break).
On the 100 x 8 trace of ``bench/scheduler.py`` rule 1 (over plain best fit, which it
refines) is what takes stranded GPUs from ~8% to >20% fewer than first fit; the price
is that packing still outranks topology, so a few more 2-4 GPU placements span two
NVLink groups than under plain best fit (the bench reports that share too).
CPU-only requests go to the host with the fewest free GPUs, then one that has the
image, then the tightest CPU and memory fit, so they do not eat into GPU hosts' CPU and memory.

``first_fit`` is the naive baseline the benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Container

from remotegpu.domain.scheduling.capacity import FleetState, HostCapacity
from remotegpu.domain.scheduling.models import Placement, PlacementRequest
from remotegpu.domain.scheduling.topology import SAME_NVLINK, choose_gpus

# How many equally packed hosts to inspect for a better topology before settling for
# the best seen: bounds the cost when a whole bucket only offers split GPU sets.
TOPOLOGY_SCAN_LIMIT = 32

_NOTHING: frozenset[str] = frozenset()


def place(fleet: FleetState, request: PlacementRequest, *, exclude: Container[str] = _NOTHING) -> Placement | None:
    """The best placement for ``request`` on hosts not in ``exclude``, or None if none fits.

    Does not change ``fleet``: commit with ``fleet.allocate(placement.allocation(request))``.
    """
    if request.pin_host_id is not None:
        host = fleet.host(request.pin_host_id)
        if host is None or host.id in exclude:
            return None
        return _place_on(host, request)
    if request.gpu_count == 0:
        return _place_cpu_only(fleet, request, exclude)

    best: tuple[tuple[int, int], HostCapacity, tuple] | None = None
    best_rank = None
    inspected = 0
    prefer = request.prefer_hosts
    for host, model, free in fleet.candidates(request.gpu_model, request.gpu_count):
        if best is not None and (host.jobs, free) != best_rank:
            break  # later buckets pack worse; topology never outranks packing
        if host.id in exclude or not host.fits_resources(request):
            continue
        gpus, penalty = choose_gpus(host.free[model], request.gpu_count)
        has_image = not prefer or host.id in prefer
        if penalty == SAME_NVLINK and has_image:
            return Placement(host.id, tuple(g.uuid for g in gpus))
        key = (penalty, 0 if has_image else 1)  # the image breaks ties of topology, nothing more
        if best is None or key < best[0]:
            best, best_rank = (key, host, gpus), (host.jobs, free)
        inspected += 1
        if inspected >= TOPOLOGY_SCAN_LIMIT:
            break
    if best is None:
        return None
    return Placement(best[1].id, tuple(g.uuid for g in best[2]))


def _place_on(host: HostCapacity, request: PlacementRequest) -> Placement | None:
    if not host.fits_resources(request):
        return None
    if request.gpu_count == 0:
        return Placement(host.id, ())
    preferred = _preferred_gpus(host, request)
    if preferred:
        return Placement(host.id, preferred)
    options = []
    for model in host.models_for(request):
        gpus, penalty = choose_gpus(host.free[model], request.gpu_count)
        options.append((host.free_count(model), penalty, gpus))
    if not options:
        return None
    _, _, gpus = min(options, key=lambda o: (o[0], o[1]))
    return Placement(host.id, tuple(g.uuid for g in gpus))


def _preferred_gpus(host: HostCapacity, request: PlacementRequest) -> tuple[str, ...]:
    """``request.prefer_gpu_uuids`` when they are exactly as many as asked, all free,
    and all of one model the request accepts; else ()."""
    wanted = tuple(dict.fromkeys(request.prefer_gpu_uuids))
    if len(wanted) != request.gpu_count or not all(u in host.free_uuids for u in wanted):
        return ()
    models = {host.gpus[u].model for u in wanted}
    if len(models) != 1 or (request.gpu_model is not None and request.gpu_model not in models):
        return ()
    return wanted


def _place_cpu_only(fleet: FleetState, request: PlacementRequest, exclude: Container[str]) -> Placement | None:
    best_key = None
    best_host = None
    for host in fleet.hosts():
        if host.id in exclude or not host.fits_resources(request):
            continue
        key = (host.free_count(), 0 if host.id in request.prefer_hosts else 1,
               host.cpu_free - request.cpu_cores, host.memory_free - request.memory_gib)
        if best_key is None or key < best_key:
            best_key, best_host = key, host
    return None if best_host is None else Placement(best_host.id, ())


def first_fit(fleet: FleetState, request: PlacementRequest) -> Placement | None:
    """Baseline: the first host in fleet order that fits, its lowest-index free GPUs."""
    for host in fleet.hosts():
        if not host.fits_resources(request):
            continue
        if request.gpu_count == 0:
            return Placement(host.id, ())
        models = host.models_for(request)
        if models:
            gpus = host.free[models[0]][: request.gpu_count]
            return Placement(host.id, tuple(g.uuid for g in gpus))
    return None
