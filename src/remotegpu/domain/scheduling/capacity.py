"""Free capacity of the fleet, indexed so a placement need not scan every GPU.

``FleetState`` is built once from hosts and live allocations, then kept current with
``allocate``/``release``. Hosts that accept new work sit in per-model buckets keyed
by (live GPU allocations on the host, free GPUs of that model). Placement walks them
busiest host first, then from the requested free count upward (see ``candidates``),
which touches a handful of hosts instead of all of them. Inside a bucket hosts are
kept in fleet order (sorted positions), so equal hosts are filled front to back: load
concentrates on the first hosts and the last ones stay whole, which measurably
strands fewer GPUs than arbitrary tie-breaking.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from typing import Protocol

from remotegpu.domain.fleet.models import Gpu, Host
from remotegpu.domain.scheduling.models import PlacementRequest
from remotegpu.domain.shared.errors import Conflict


class AllocationLike(Protocol):
    host_id: str
    gpu_uuids: tuple[str, ...]
    cpu_cores: int
    memory_gib: int


class HostCapacity:
    """One host's totals and what is still free on it.

    ``jobs`` counts the live allocations holding GPUs here: a host drains (becomes
    whole again) only once every one of them has ended, so the more it runs, the
    longer it stays busy anyway and the less it costs to give it one more.
    """

    __slots__ = (
        "host", "id", "schedulable", "cpu_free", "memory_free", "free", "free_uuids", "totals", "gpus", "jobs",
        "cpu_capacity", "memory_capacity",
    )

    def __init__(self, host: Host):
        self.host = host
        self.id = host.id
        self.schedulable = host.status.accepts_new_work
        # Scheduling counts requests against capacity × the admin's overcommit ratio
        # (containers still get their full limits); whole units, rounded down.
        self.cpu_capacity = host.schedulable_cpu_cores
        self.memory_capacity = host.schedulable_memory_gib
        self.cpu_free = self.cpu_capacity
        self.memory_free = self.memory_capacity
        self.jobs = 0
        self.gpus: dict[str, Gpu] = {g.uuid: g for g in host.gpus}
        # model → free healthy GPUs, kept sorted by index (stable, predictable choices)
        self.free: dict[str, list[Gpu]] = {}
        self.totals: dict[str, int] = {}
        for gpu in sorted(host.gpus, key=lambda g: g.index):
            if gpu.healthy:
                self.free.setdefault(gpu.model, []).append(gpu)
                self.totals[gpu.model] = self.totals.get(gpu.model, 0) + 1
        self.free_uuids = {g.uuid for gpus in self.free.values() for g in gpus}

    def copy(self) -> "HostCapacity":
        clone = object.__new__(HostCapacity)
        for name in ("host", "id", "schedulable", "cpu_free", "memory_free", "gpus", "totals", "jobs", "cpu_capacity", "memory_capacity"):
            setattr(clone, name, getattr(self, name))
        clone.free = {model: list(gpus) for model, gpus in self.free.items()}
        clone.free_uuids = set(self.free_uuids)
        return clone

    def free_count(self, model: str | None = None) -> int:
        if model is None:
            return len(self.free_uuids)
        return len(self.free.get(model, ()))

    def matches(self, request: PlacementRequest) -> bool:
        """Static filters: status, pin and label selector."""
        if not self.schedulable:
            return False
        if request.pin_host_id is not None and request.pin_host_id != self.id:
            return False
        labels = self.host.labels
        return all(labels.get(key) == value for key, value in request.labels.items())

    def fits_resources(self, request: PlacementRequest) -> bool:
        """Everything but the GPUs fits right now."""
        return (
            self.cpu_free >= request.cpu_cores
            and self.memory_free >= request.memory_gib
            and self.matches(request)
        )

    def models_for(self, request: PlacementRequest) -> list[str]:
        """GPU models on this host that could serve the request's count right now."""
        models = [request.gpu_model] if request.gpu_model is not None else list(self.free)
        return [m for m in models if len(self.free.get(m, ())) >= request.gpu_count]

    def could_ever_fit(self, request: PlacementRequest) -> bool:
        """Would the request fit if this host were empty? (Used to protect queued work.)"""
        if not self.matches(request):
            return False
        if self.cpu_capacity < request.cpu_cores or self.memory_capacity < request.memory_gib:
            return False
        if request.gpu_count == 0:
            return True
        if request.gpu_model is not None:
            return self.totals.get(request.gpu_model, 0) >= request.gpu_count
        return any(total >= request.gpu_count for total in self.totals.values())


class FleetState:
    """Mutable, in-memory view of free capacity; pure (no I/O), not thread-safe.

    ``allocations`` are the live allocations already recorded. They are applied
    leniently (unknown GPUs ignored, overcommit leaves negative free CPU/memory) because
    stored history may predate the current inventory; ``allocate`` is strict.
    """

    def __init__(self, hosts: Iterable[Host], allocations: Iterable[AllocationLike] = ()):
        self._hosts: dict[str, HostCapacity] = {h.id: HostCapacity(h) for h in hosts}
        self._order: list[HostCapacity] = list(self._hosts.values())
        self._position = {h.id: i for i, h in enumerate(self._order)}
        for allocation in allocations:
            host = self._hosts.get(allocation.host_id)
            if host is not None:
                self._take(host, allocation)
        self._build_buckets()

    # --- queries ---------------------------------------------------------------------

    def hosts(self) -> Iterable[HostCapacity]:
        """Every host, in the order given at construction."""
        return self._hosts.values()

    def host(self, host_id: str) -> HostCapacity | None:
        return self._hosts.get(host_id)

    def models(self) -> list[str]:
        return list(self._buckets)

    def schedulable_count(self) -> int:
        return sum(1 for h in self._hosts.values() if h.schedulable)

    def candidates(self, model: str | None, min_free: int) -> Iterator[tuple[HostCapacity, str, int]]:
        """Schedulable hosts with at least ``min_free`` free GPUs of ``model`` (any model
        when None), as (host, model, free count): most live GPU allocations (``jobs``)
        first, then fewest free GPUs first, then fleet order.

        Busiest first: a host drains only when all its allocations end, so new work
        goes where it delays draining least, and lightly used hosts get the chance to
        become whole for 8-GPU requests (idle hosts, jobs 0, come last). Fewest free
        next is best fit among those. For any model, equal buckets come most-abundant
        model first: "any GPU" work should not use up the scarce model others name.
        """
        if model is not None:
            models = [model]
        else:
            models = sorted(self._buckets, key=lambda m: -self._free_by_model[m])
        tables = [(m, self._buckets[m]) for m in models if m in self._buckets]
        depth = max((len(t) for _, t in tables), default=0)
        for jobs in range(depth - 1, -1, -1):
            rows = [(m, table[jobs]) for m, table in tables if jobs < len(table)]
            top = max(len(row) for _, row in rows)
            for count in range(max(min_free, 1), top):
                for m, row in rows:
                    if count < len(row):
                        for position in row[count]:
                            yield self._order[position], m, count

    def gpu_counts(self) -> dict[str, tuple[int, int]]:
        """model → (healthy GPUs, free GPUs) on hosts that accept new work."""
        counts: dict[str, tuple[int, int]] = {}
        for host in self._hosts.values():
            if host.schedulable:
                for model, total in host.totals.items():
                    t, f = counts.get(model, (0, 0))
                    counts[model] = (t + total, f + host.free_count(model))
        return counts

    def copy(self) -> "FleetState":
        clone = object.__new__(FleetState)
        clone._hosts = {hid: h.copy() for hid, h in self._hosts.items()}
        clone._order = list(clone._hosts.values())
        clone._position = dict(self._position)
        clone._build_buckets()
        return clone

    # --- changes ---------------------------------------------------------------------

    def allocate(self, allocation: AllocationLike) -> None:
        """Record a placement; Conflict if any of it is not free (nothing changes then)."""
        host = self._hosts.get(allocation.host_id)
        if host is None:
            raise Conflict(f"unknown host {allocation.host_id}")
        missing = [u for u in allocation.gpu_uuids if u not in host.free_uuids]
        if missing or len(set(allocation.gpu_uuids)) != len(allocation.gpu_uuids):
            raise Conflict("GPU already allocated or not on this host", details={"gpu_uuids": missing})
        if host.cpu_free < allocation.cpu_cores or host.memory_free < allocation.memory_gib:
            raise Conflict("not enough free CPU or memory on this host")
        before = {m: len(g) for m, g in host.free.items()}, host.jobs
        self._take(host, allocation)
        self._reindex(host, before)

    def release(self, allocation: AllocationLike) -> None:
        """Give an allocation's resources back (GPUs that turned unhealthy stay out)."""
        host = self._hosts.get(allocation.host_id)
        if host is None:
            return
        before = {m: len(g) for m, g in host.free.items()}, host.jobs
        host.cpu_free += allocation.cpu_cores
        host.memory_free += allocation.memory_gib
        returned = False
        for uuid in allocation.gpu_uuids:
            gpu = host.gpus.get(uuid)
            if gpu is None or not gpu.healthy or uuid in host.free_uuids:
                continue
            free = host.free.setdefault(gpu.model, [])
            free.append(gpu)
            free.sort(key=lambda g: g.index)
            host.free_uuids.add(uuid)
            returned = True
        if returned and host.jobs > 0:  # mirrors _take: counted iff it held a GPU here
            host.jobs -= 1
        self._reindex(host, before)

    # --- internals -------------------------------------------------------------------

    @staticmethod
    def _take(host: HostCapacity, allocation: AllocationLike) -> None:
        host.cpu_free -= allocation.cpu_cores
        host.memory_free -= allocation.memory_gib
        taken = set(allocation.gpu_uuids) & host.free_uuids
        if taken:
            host.jobs += 1
            host.free_uuids -= taken
            for model, gpus in host.free.items():
                host.free[model] = [g for g in gpus if g.uuid not in taken]

    def _build_buckets(self) -> None:
        # model → [jobs][free count] → sorted fleet positions of hosts with exactly that
        # many live GPU allocations and free GPUs of the model; a sorted list of ints
        # keeps insert/remove at C speed for 1,000s of hosts
        self._buckets: dict[str, list[list[list[int]]]] = {}
        self._width: dict[str, int] = {}  # model → largest host total + 1
        self._free_by_model: dict[str, int] = {}  # on schedulable hosts
        for host in self._order:
            for model, total in host.totals.items():
                self._width[model] = max(self._width.get(model, 0), total + 1)
                self._free_by_model.setdefault(model, 0)
                self._buckets.setdefault(model, [])
        for position, host in enumerate(self._order):
            if host.schedulable:
                for model in host.totals:
                    insort(self._bucket(model, host.jobs, host.free_count(model)), position)
                    self._free_by_model[model] += host.free_count(model)

    def _bucket(self, model: str, jobs: int, free: int) -> list[int]:
        table = self._buckets[model]
        while len(table) <= jobs:
            table.append([[] for _ in range(self._width[model])])
        return table[jobs][free]

    def _reindex(self, host: HostCapacity, before: tuple[dict[str, int], int]) -> None:
        if not host.schedulable:
            return
        free_before, jobs_before = before
        position = self._position[host.id]
        for model in host.totals:
            old, new = free_before.get(model, 0), host.free_count(model)
            if old != new or jobs_before != host.jobs:
                bucket = self._bucket(model, jobs_before, old)
                del bucket[bisect_left(bucket, position)]
                insort(self._bucket(model, host.jobs, new), position)
                self._free_by_model[model] += new - old
