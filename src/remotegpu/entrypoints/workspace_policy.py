"""The workspace policy (default quotas, per-user caps, who creates workspaces) from settings."""

from __future__ import annotations

from datetime import timedelta

from remotegpu.application.workspaces.quotas import CreationPolicy, WorkspacePolicy
from remotegpu.domain.workspaces.quota import RESOURCES, Quota, UserQuota
from remotegpu.entrypoints.config import Settings


def workspace_policy_from(settings: Settings) -> WorkspacePolicy:
    return WorkspacePolicy(
        default_quota=Quota(**{f"max_{r}": getattr(settings, f"default_quota_{r}") for r in RESOURCES}),
        user_quota=UserQuota(
            Quota(**{f"max_{r}": getattr(settings, f"user_quota_{r}") for r in RESOURCES}),
            max_workspaces=settings.user_quota_workspaces,
        ),
        creation=CreationPolicy(settings.workspace_creation),
        invitation_ttl=timedelta(days=settings.workspace_invitation_days),
    )
