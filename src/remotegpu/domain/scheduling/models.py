"""Value objects of scheduling: what is asked, what was chosen, what is held."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from remotegpu.domain.shared.errors import InvalidInput

MAX_GPUS_PER_REQUEST = 8


@dataclass(frozen=True)
class PlacementRequest:
    """Resources one environment (or job) needs on a single host.

    ``gpu_model`` None means any model (the GPUs of one placement are still all of
    one model). ``labels`` is a selector: every key must be present on the host with
    the same value. ``pin_host_id`` restricts the choice to one host — used to start
    a stopped environment again where its disk lives. ``prefer_gpu_uuids``: on a
    pinned host, take exactly these GPUs when they are all free and fit the request
    (an environment started again gets the GPUs it had, so its container is reused
    as it was instead of being recreated for other devices).
    """

    gpu_count: int = 0
    gpu_model: str | None = None
    cpu_cores: int = 0
    memory_gib: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    pin_host_id: str | None = None
    prefer_gpu_uuids: tuple[str, ...] = ()
    # Hosts that already have the environment's image: preferred when all else is equal
    # (same packing rank and topology; CPU-only: same free GPU count), so no pull is needed.
    prefer_hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.gpu_count <= MAX_GPUS_PER_REQUEST:
            raise InvalidInput(
                f"gpu_count must be between 0 and {MAX_GPUS_PER_REQUEST}", details={"field": "gpu_count"}
            )
        for name in ("cpu_cores", "memory_gib"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must not be negative", details={"field": name})
        # Frozen means frozen: a caller mutating its dict must not change a queued request.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True)
class Allocation:
    """Resources held on a host by one live environment.

    The scheduler only reads these four attributes, so any object carrying them
    (e.g. a persisted allocation row mapped by a repository) can be passed instead.
    """

    host_id: str
    gpu_uuids: tuple[str, ...] = ()
    cpu_cores: int = 0
    memory_gib: int = 0


@dataclass(frozen=True)
class Placement:
    host_id: str
    gpu_uuids: tuple[str, ...]

    def allocation(self, request: PlacementRequest) -> Allocation:
        """What to record (and later release) when this placement is committed."""
        return Allocation(self.host_id, self.gpu_uuids, request.cpu_cores, request.memory_gib)
