"""The wait queue: FIFO with conservative backfill.

Rule. Walk the queue in order. A request starts when ``place`` finds room for it on
a host that no *blocked earlier request* could ever use. A blocked request reserves
every host it would fit on if that host were empty (status, pin, labels, model and
total GPUs, total CPU and memory). So a later request only backfills capacity that
no one ahead of it can take — it never delays anyone ahead, whatever the run times.
(EASY-style backfill would need run-time estimates, which environments do not have.)

Consequences worth knowing:
- on a fleet of identical hosts, a blocked 8-GPU request holds back the 1-GPU
  requests behind it (fair: they would otherwise starve it);
- a request pinned to its host (restart where the disk lives) reserves only that host;
- a request no schedulable host could ever hold reserves nothing and is reported in
  ``unschedulable`` so the caller can tell the user (it keeps its place).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from remotegpu.domain.scheduling.capacity import FleetState
from remotegpu.domain.scheduling.models import Placement, PlacementRequest
from remotegpu.domain.scheduling.placement import place


@dataclass(frozen=True)
class QueuedRequest:
    id: str  # the waiting environment's (or job's) id
    request: PlacementRequest


@dataclass
class QueuePlan:
    # (id, placement) to start now, in queue order; already allocated in the fleet
    started: list[tuple[str, Placement]] = field(default_factory=list)
    # id → 1-based position among the requests still waiting
    positions: dict[str, int] = field(default_factory=dict)
    # waiting ids that fit no schedulable host even when empty
    unschedulable: list[str] = field(default_factory=list)


def _shape(request: PlacementRequest) -> tuple:
    return (
        request.gpu_count,
        request.gpu_model,
        request.cpu_cores,
        request.memory_gib,
        tuple(sorted(request.labels.items())),
        request.pin_host_id,
    )


def plan_queue(fleet: FleetState, queued: Sequence[QueuedRequest]) -> QueuePlan:
    """Decide which queued requests start now, oldest first (see the module rule).

    Allocates the started ones in ``fleet`` (pass ``fleet.copy()`` to keep yours).
    """
    plan = QueuePlan()
    reserved: set[str] = set()
    total_hosts = fleet.schedulable_count()
    eligible_by_shape: dict[tuple, set[str]] = {}  # queues repeat a few shapes
    for item in queued:
        placement = None
        if len(reserved) < total_hosts:
            placement = place(fleet, item.request, exclude=reserved)
        if placement is not None:
            fleet.allocate(placement.allocation(item.request))
            plan.started.append((item.id, placement))
            continue
        plan.positions[item.id] = len(plan.positions) + 1
        shape = _shape(item.request)
        eligible = eligible_by_shape.get(shape)
        if eligible is None:
            eligible = {h.id for h in fleet.hosts() if h.could_ever_fit(item.request)}
            eligible_by_shape[shape] = eligible
        if not eligible:
            plan.unschedulable.append(item.id)
        reserved |= eligible
    return plan
