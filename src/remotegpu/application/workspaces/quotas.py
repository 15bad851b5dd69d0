"""Quota policy: the limits that apply when an admin set none, and the checks that use them.

Two limits guard every placement: the workspace's quota (its own, else the configured
default) and, for each owner of the workspace, that user's cap over all the workspaces
they own (their own, else the configured default). Creating more workspaces therefore
never buys more resources: they all count against their owners' caps.

The checks read usage and then admit; callers hold ``uow.lock_scheduling()`` so that two
requests cannot both admit past a limit (the same lock the placement itself needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.shared.errors import QuotaExceeded
from remotegpu.domain.workspaces.quota import DEFAULT_USER_QUOTA, DEFAULT_WORKSPACE_QUOTA, UNLIMITED, Quota, Usage, UserQuota


class CreationPolicy(str, Enum):
    """Who may create team workspaces (personal workspaces come with every account)."""

    ANYONE = "anyone"
    ADMINS = "admins"


@dataclass(frozen=True)
class WorkspacePolicy:
    default_quota: Quota = DEFAULT_WORKSPACE_QUOTA
    user_quota: UserQuota = DEFAULT_USER_QUOTA
    creation: CreationPolicy = CreationPolicy.ANYONE
    invitation_ttl: timedelta = timedelta(days=7)

    async def workspace_quota(self, uow: UnitOfWork, workspace_id: str) -> tuple[Quota, bool]:
        """(limits in force, whether they are the configured default)."""
        own = await uow.workspaces.get_quota(workspace_id)
        return (self.default_quota, True) if own is None else (own, False)

    async def cap_of(self, uow: UnitOfWork, user_id: str) -> tuple[UserQuota, bool]:
        """(the user's cap in force, whether it is the configured default)."""
        own = await uow.workspaces.get_user_quota(user_id)
        return (self.user_quota, True) if own is None else (own, False)

    async def check(self, uow: UnitOfWork, workspace_id: str, request: Usage) -> None:
        """Raise QuotaExceeded (409) naming the first limit — workspace, then each owner's cap — the request passes."""
        quota, _ = await self.workspace_quota(uow, workspace_id)
        usage = await uow.workspaces.usage(workspace_id) + await workload_usage(uow, workspace_id)
        quota.check_request(usage, request)
        for owner_id in await uow.workspaces.list_owners(workspace_id):
            cap, _ = await self.cap_of(uow, owner_id)
            if cap.resources == UNLIMITED:
                continue  # nothing to sum
            owner = await uow.users.get(owner_id)
            cap.resources.check_request(
                await uow.workspaces.owned_usage(owner_id), request, scope="user",
                user_id=owner_id, username=owner.username if owner else owner_id,
            )

    async def fits(self, uow: UnitOfWork, workspace_id: str, request: Usage) -> bool:
        """Like ``check`` without raising (the queue keeps waiting instead)."""
        try:
            await self.check(uow, workspace_id, request)
        except QuotaExceeded:
            return False
        return True

    async def check_can_own_another(self, uow: UnitOfWork, user_id: str, username: str) -> None:
        """Refuse one more owned team workspace past the user's max_workspaces (409 quota_exceeded)."""
        cap, _ = await self.cap_of(uow, user_id)
        cap.check_can_own_another(await uow.workspaces.count_owned(user_id), user_id=user_id, username=username)


async def workload_usage(uow: UnitOfWork, workspace_id: str) -> Usage:
    """What the workspace's training jobs (while they hold nodes) and inference replicas
    use: GPUs, CPU and memory (environments are counted by ``workspaces.usage``). Counted
    against the workspace's quota; owners' caps over several workspaces do not include
    them yet."""
    from remotegpu.domain.workloads.models import JobStatus

    total = Usage()
    for job in await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING]):
        if job.workspace_id == workspace_id:
            n = len(job.node_states)
            total = total + Usage(gpus=n * job.gpus_per_node, cpu_cores=n * job.cpu_cores, memory_gib=n * job.memory_gib)
    for service in await uow.inference_services.list_active():
        if service.workspace_id == workspace_id:
            n = len(service.replicas)
            total = total + Usage(gpus=n * service.gpus, cpu_cores=n * service.cpu_cores, memory_gib=n * service.memory_gib)
    return total
