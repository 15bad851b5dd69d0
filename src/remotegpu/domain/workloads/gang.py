"""Gang placement and the training-job queue. Pure; callers persist the result.

**All or nothing.** ``place_gang`` finds one host per node (distinct hosts: a node is
a machine's share of the job), each chosen by the environments' placement rule
(``domain.scheduling.place``: packing, then topology), and changes the fleet only when
every node has one — there is never a partial hold that idles GPUs while the rest of
the gang waits (the deadlock Kubeflow/Volcano users hit). Nodes land on distinct hosts,
so one node's choice never changes what another host offers: greedy is exact — the
gang is placed whenever at least N hosts can each hold one node.

**The queue** (``plan_gangs``), walked in order of *effective priority*:

* effective priority = ``priority`` + one step per ``AGING_STEP_SECONDS`` waited
  (aging): a low-priority job waiting long enough overtakes newer high-priority ones;
  ties go to the oldest.
* **Backfill**: a job that cannot be placed does not stop the walk: later jobs may use
  capacity it cannot use right now (a 1-node job runs on the one free host while a
  2-node job waits for a second one).
* **No starvation** (the aging rule that bounds backfill and priority): once a job
  has waited ``STARVATION_SECONDS`` (default 300 s) it is *starving*: starving jobs
  are walked first, oldest first, whatever their priority, and a starving job that
  cannot be placed *reserves* every host it could ever run on: no job after it in the
  walk may start there, so those hosts drain as their current work ends and the big
  job starts when enough of them are free. A job
  no set of hosts could ever hold (fewer eligible hosts than nodes) reserves nothing.
  The bound on its wait is therefore ``STARVATION_SECONDS`` + the longest run time of
  what held its hosts then (``test_gang_properties`` checks it under a random stream
  of small jobs).

Interactive environments have their own queue (``domain.scheduling.queue``) and are
placed on the same fleet snapshot; reservations of starving jobs hold back other
jobs only (an environment created on a reserved host still starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from remotegpu.domain.scheduling.capacity import FleetState
from remotegpu.domain.scheduling.models import Placement, PlacementRequest
from remotegpu.domain.scheduling.placement import place

#: One priority step per this many seconds waited.
AGING_STEP_SECONDS = 600
#: A blocked job waiting this long reserves the hosts it can use (they drain for it).
STARVATION_SECONDS = 300


def place_gang(fleet: FleetState, request: PlacementRequest, nodes: int, *, exclude: frozenset[str] | set[str] = frozenset()) -> list[Placement] | None:
    """One placement per node on ``nodes`` distinct hosts (not in ``exclude``), or None.

    Does not change ``fleet``: commit with ``allocate_gang``."""
    used: set[str] = set(exclude)
    chosen: list[Placement] = []
    for _ in range(nodes):
        placement = place(fleet, request, exclude=used)
        if placement is None:
            return None
        chosen.append(placement)
        used.add(placement.host_id)
    return chosen


def allocate_gang(fleet: FleetState, request: PlacementRequest, placements: list[Placement]) -> None:
    """Record every node's allocation; on a conflict nothing stays allocated."""
    done = []
    try:
        for p in placements:
            fleet.allocate(p.allocation(request))
            done.append(p)
    except Exception:
        for p in done:
            fleet.release(p.allocation(request))
        raise


def free_nodes(fleet: FleetState, request: PlacementRequest) -> int:
    """How many hosts could each take one node right now."""
    count = 0
    for host in fleet.hosts():
        if host.fits_resources(request) and (request.gpu_count == 0 or host.models_for(request)):
            count += 1
    return count


def eligible_hosts(fleet: FleetState, request: PlacementRequest) -> set[str]:
    """Hosts that could hold one node if they were empty."""
    return {h.id for h in fleet.hosts() if h.could_ever_fit(request)}


def describe_gang_wait(fleet: FleetState, request: PlacementRequest, nodes: int) -> str:
    """e.g. "needs 2 nodes × 4 A100; largest free: 1 node"."""
    gpus = f"{request.gpu_count} {request.gpu_model or 'GPU'}" if request.gpu_count else f"{request.cpu_cores} vCPU"
    free = free_nodes(fleet, request)
    return f"needs {nodes} {_nodes(nodes)} × {gpus}; largest free: {free} {_nodes(free)}"


def _nodes(n: int) -> str:
    return "node" if n == 1 else "nodes"


@dataclass(frozen=True)
class QueuedGang:
    id: str
    request: PlacementRequest
    nodes: int
    priority: int
    queued_at: datetime


@dataclass
class GangPlan:
    started: list[tuple[str, list[Placement]]] = field(default_factory=list)  # already allocated in the fleet
    waiting: dict[str, str] = field(default_factory=dict)  # id → why it waits
    order: list[str] = field(default_factory=list)  # the walk's order (all ids)


def effective_priority(item: QueuedGang, now: datetime, aging_step: float = AGING_STEP_SECONDS) -> int:
    waited = max(0.0, (now - item.queued_at).total_seconds())
    return item.priority + int(waited // aging_step)


def plan_gangs(
    fleet: FleetState, queued: Sequence[QueuedGang], now: datetime, *,
    starvation_seconds: float = STARVATION_SECONDS, aging_step: float = AGING_STEP_SECONDS,
) -> GangPlan:
    """Which queued jobs start now (see the module rule). Allocates them in ``fleet``."""
    plan = GangPlan()
    def starving(q: QueuedGang) -> bool:
        return (now - q.queued_at).total_seconds() >= starvation_seconds

    # Starving jobs first, oldest first; then the rest by effective priority, oldest first.
    ordered = sorted(
        queued,
        key=lambda q: (0, q.queued_at, 0, q.id) if starving(q)
        else (1, -effective_priority(q, now, aging_step), q.queued_at, q.id),
    )
    plan.order = [q.id for q in ordered]
    reserved: set[str] = set()
    reserved_by: dict[str, str] = {}
    for item in ordered:
        placements = place_gang(fleet, item.request, item.nodes, exclude=reserved)
        if placements is not None:
            allocate_gang(fleet, item.request, placements)
            plan.started.append((item.id, placements))
            continue
        eligible = eligible_hosts(fleet, item.request)
        if len(eligible) < item.nodes:
            plan.waiting[item.id] = (
                f"needs {item.nodes} {_nodes(item.nodes)} × "
                f"{item.request.gpu_count} {item.request.gpu_model or 'GPU'}; only {len(eligible)} "
                f"{'host' if len(eligible) == 1 else 'hosts'} that accept work could ever hold one"
            )
            continue
        why = describe_gang_wait(fleet, item.request, item.nodes)
        blockers = {reserved_by[h] for h in eligible if h in reserved_by}
        if blockers and free_nodes(fleet, item.request) >= item.nodes:
            why += "; its hosts are held for a job that has waited longer"
        plan.waiting[item.id] = why
        if starving(item):
            for h in eligible - reserved:
                reserved_by[h] = item.id
            reserved |= eligible
    return plan
