"""Quota rules, pure: the environment module asks ``check_request`` before placing work.

A limit of ``None`` means unlimited. Usage and requests are whole resources: GPUs,
environments, CPU cores, GiB of memory and of storage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from remotegpu.domain.shared.errors import InvalidInput, QuotaExceeded

RESOURCES = ("gpus", "environments", "cpu_cores", "memory_gib", "storage_gib")


@dataclass(frozen=True)
class Usage:
    gpus: int = 0
    environments: int = 0
    cpu_cores: int = 0
    memory_gib: int = 0
    storage_gib: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Quota:
    max_gpus: int | None = None
    max_environments: int | None = None
    max_cpu_cores: int | None = None
    max_memory_gib: int | None = None
    max_storage_gib: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidInput(f"{f.name} must be a non-negative integer or null", details={"field": f.name})

    def limit(self, resource: str) -> int | None:
        return getattr(self, f"max_{resource}")

    def violations(self, usage: Usage, request: Usage) -> list[dict]:
        """Every resource the request would push past its limit (empty: it fits)."""
        found = []
        for resource in RESOURCES:
            limit = self.limit(resource)
            wanted = getattr(usage, resource) + getattr(request, resource)
            if limit is not None and getattr(request, resource) > 0 and wanted > limit:
                found.append(
                    {"resource": resource, "limit": limit, "used": getattr(usage, resource), "requested": getattr(request, resource)}
                )
        return found

    def check_request(self, usage: Usage, request: Usage) -> None:
        problems = self.violations(usage, request)
        if problems:
            names = ", ".join(p["resource"] for p in problems)
            raise QuotaExceeded(f"workspace quota exceeded for {names}", details={"violations": problems})


UNLIMITED = Quota()
