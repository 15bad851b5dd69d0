"""Scheduling context: pure placement (filter, score, topology) and the wait queue."""

from remotegpu.domain.scheduling.capacity import FleetState, HostCapacity
from remotegpu.domain.scheduling.models import MAX_GPUS_PER_REQUEST, Allocation, Placement, PlacementRequest
from remotegpu.domain.scheduling.placement import first_fit, place
from remotegpu.domain.scheduling.queue import QueuedRequest, QueuePlan, plan_queue

__all__ = [
    "MAX_GPUS_PER_REQUEST",
    "Allocation",
    "FleetState",
    "HostCapacity",
    "Placement",
    "PlacementRequest",
    "QueuePlan",
    "QueuedRequest",
    "first_fit",
    "place",
    "plan_queue",
]
