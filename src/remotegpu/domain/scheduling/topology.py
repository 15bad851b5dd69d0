"""Which GPUs of one host to hand out, given NVLink/NUMA topology.

Multi-GPU work talks GPU-to-GPU all the time: inside one NVLink group that traffic
stays off PCIe, inside one NUMA node it at least avoids the inter-socket link. Among
groups that fit we take the smallest (best fit), so the big groups stay whole for
the next large request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from remotegpu.domain.fleet.models import Gpu

SAME_NVLINK = 0  # all chosen GPUs share one NVLink group (or just one GPU)
SAME_NUMA = 1  # one NUMA node, no common NVLink group
SPREAD = 2  # several groups, or topology unknown


def _groups(gpus: Sequence[Gpu], key: Callable[[Gpu], int | None]) -> list[list[Gpu]]:
    """Group by ``key`` in order of first index; an unknown key is a group of its own."""
    grouped: dict[object, list[Gpu]] = {}
    for gpu in gpus:
        k = key(gpu)
        grouped.setdefault(("lone", gpu.index) if k is None else k, []).append(gpu)
    return list(grouped.values())


def _best_fit(gpus: Sequence[Gpu], count: int, key: Callable[[Gpu], int | None]) -> list[Gpu] | None:
    fitting = [g for g in _groups(gpus, key) if len(g) >= count]
    return min(fitting, key=len) if fitting else None


def _nvlink(gpu: Gpu) -> int | None:
    return gpu.nvlink_group


def _numa(gpu: Gpu) -> int | None:
    return gpu.numa_node


def choose_gpus(free: Sequence[Gpu], count: int) -> tuple[tuple[Gpu, ...], int]:
    """Pick ``count`` of the ``free`` GPUs (index-sorted, ``len(free) >= count``).

    Returns the GPUs and a penalty: SAME_NVLINK, SAME_NUMA or SPREAD.
    """
    if count <= 0:
        return (), SAME_NVLINK
    group = _best_fit(free, count, _nvlink)
    if group is not None:
        # An NVSwitch box is one NVLink group spanning two sockets: still prefer one node.
        inner = _best_fit(group, count, _numa) or group
        return tuple(inner[:count]), SAME_NVLINK
    group = _best_fit(free, count, _numa)
    if group is not None:
        return tuple(group[:count]), SAME_NUMA
    return _spread(free, count), SPREAD


def _spread(free: Sequence[Gpu], count: int) -> tuple[Gpu, ...]:
    """Span as few groups as possible: take whole large groups while the rest does
    not fit in one, then finish in the smallest group that holds the remainder."""
    known_nvlink = any(g.nvlink_group is not None for g in free)
    pool = sorted(_groups(free, _nvlink if known_nvlink else _numa), key=len, reverse=True)
    chosen: list[Gpu] = []
    remaining = count
    while remaining > 0 and pool:
        fitting = [g for g in pool if len(g) >= remaining]
        if fitting:
            chosen.extend(min(fitting, key=len)[:remaining])
            break
        largest = pool.pop(0)
        chosen.extend(largest)
        remaining -= len(largest)
    return tuple(sorted(chosen, key=lambda g: g.index))
