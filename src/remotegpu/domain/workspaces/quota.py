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

    def check_request(self, usage: Usage, request: Usage, *, scope: str = "workspace", **context: str) -> None:
        """Raise QuotaExceeded naming each limit the request would pass.

        ``scope`` says whose limit it is ("workspace", or "user" for an owner's cap over
        all their workspaces); ``context`` (e.g. user_id, username) goes into the details.
        """
        problems = self.violations(usage, request)
        if problems:
            names = ", ".join(p["resource"] for p in problems)
            whose = "workspace quota" if scope == "workspace" else (
                f"quota of {context.get('username', 'the owner')} across the workspaces they own"
            )
            raise QuotaExceeded(f"{whose} exceeded for {names}", details={"scope": scope, **context, "violations": problems})


UNLIMITED = Quota()


@dataclass(frozen=True)
class UserQuota:
    """One user's cap over every workspace they own (each owner of a workspace pays for it in full).

    ``resources`` limits the summed usage of those workspaces; ``max_workspaces`` the
    number of team workspaces they may own (their personal workspace does not count).
    """

    resources: Quota = UNLIMITED
    max_workspaces: int | None = None

    def __post_init__(self) -> None:
        value = self.max_workspaces
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidInput("max_workspaces must be a non-negative integer or null", details={"field": "max_workspaces"})

    def check_can_own_another(self, owned: int, **context: str) -> None:
        if self.max_workspaces is not None and owned + 1 > self.max_workspaces:
            raise QuotaExceeded(
                f"owning another team workspace would pass the limit of {self.max_workspaces}",
                details={"scope": "user", **context, "violations": [
                    {"resource": "workspaces", "limit": self.max_workspaces, "used": owned, "requested": 1}
                ]},
            )


# What a fresh installation applies when nothing is configured (entrypoints/config.py
# exposes each number as REMOTEGPU_DEFAULT_QUOTA_* / REMOTEGPU_USER_QUOTA_*).
DEFAULT_WORKSPACE_QUOTA = Quota(max_gpus=8, max_environments=10, max_cpu_cores=64, max_memory_gib=512, max_storage_gib=500)
DEFAULT_USER_QUOTA = UserQuota(
    Quota(max_gpus=8, max_environments=20, max_cpu_cores=128, max_memory_gib=1024, max_storage_gib=1000), max_workspaces=5
)
