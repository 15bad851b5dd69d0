from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, model_validator

from remotegpu.domain.workspaces.models import InvitationStatus, Role
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict


class WorkspaceListQuery(PageQuery):
    all: bool = Field(False, description="every workspace on the platform, not only yours (platform admins; others get 403)")
    search: str | None = Field(None, max_length=100, description="with all=true: match name or slug")


class WorkspaceIn(Strict):
    name: str = Field(min_length=1, max_length=100)


class WorkspaceOut(BaseModel):
    id: str
    name: str
    slug: str
    is_personal: bool
    created_at: datetime
    role: Role | None = Field(description="the caller's role; null for a platform admin who is not a member")


class MemberIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    role: Role = Role.MEMBER


class InvitationIn(Strict):
    """Whom to invite: exactly one of username and email."""

    username: str | None = Field(None, min_length=1, max_length=64)
    email: str | None = Field(None, min_length=3, max_length=254)
    role: Role = Role.MEMBER

    @model_validator(mode="after")
    def _exactly_one(self) -> "InvitationIn":
        if (self.username is None) == (self.email is None):
            raise ValueError("give exactly one of username and email")
        return self


class InvitationOut(BaseModel):
    id: str
    workspace_id: str
    workspace_name: str
    user_id: str = Field(description="the invitee")
    username: str
    role: Role
    invited_by: str | None = Field(description="the inviter's username; null when their account is gone")
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime


class MemberPatchIn(Strict):
    role: Role


class MemberOut(BaseModel):
    user_id: str
    username: str
    display_name: str
    role: Role
    joined_at: datetime


_LIMIT = Field(None, ge=0, le=1_000_000)


class QuotaIn(Strict):
    max_gpus: int | None = _LIMIT
    max_environments: int | None = _LIMIT
    max_cpu_cores: int | None = _LIMIT
    max_memory_gib: int | None = _LIMIT
    max_storage_gib: int | None = _LIMIT


class UsageOut(BaseModel):
    gpus: int
    environments: int
    cpu_cores: int
    memory_gib: int
    storage_gib: int


class QuotaOut(BaseModel):
    max_gpus: int | None
    max_environments: int | None
    max_cpu_cores: int | None
    max_memory_gib: int | None
    max_storage_gib: int | None
    usage: UsageOut
    is_default: bool = Field(description="no limits of its own: the platform's configured default applies")


class UserQuotaIn(QuotaIn):
    max_workspaces: int | None = _LIMIT


class UserQuotaOut(BaseModel):
    """A user's cap over all the workspaces they own (every owner counts a workspace in full)."""

    user_id: str
    username: str
    max_gpus: int | None
    max_environments: int | None
    max_cpu_cores: int | None
    max_memory_gib: int | None
    max_storage_gib: int | None
    max_workspaces: int | None
    usage: UsageOut = Field(description="summed over the workspaces the user owns")
    owned_workspaces: int = Field(description="team workspaces the user owns (the personal one does not count)")
    is_default: bool = Field(description="no cap of their own: the platform's configured default applies")
