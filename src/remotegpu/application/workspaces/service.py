"""Team workspaces: create, membership and roles, quotas.

Visibility rule: a workspace you are not a member of does not exist for you (404),
unless you are a platform admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from remotegpu.application.identity import audit
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.shared.read_cache import EpochCache, HotReads
from remotegpu.application.workspaces.quotas import CreationPolicy, WorkspacePolicy
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import (
    Membership,
    Role,
    Workspace,
    check_can_assign,
    check_keeps_an_owner,
)
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota

_SLUG_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class WorkspaceView:
    workspace: Workspace
    role: Role | None  # the caller's role; None for a platform admin who is not a member


@dataclass(frozen=True)
class QuotaView:
    quota: Quota
    usage: Usage
    is_default: bool = False  # no limits of its own: the configured default applies


@dataclass(frozen=True)
class UserQuotaView:
    user: User
    quota: UserQuota
    usage: Usage  # summed over the workspaces the user owns
    owned_workspaces: int  # team workspaces the user owns
    is_default: bool


async def authorize(uow: UnitOfWork, actor: User, workspace_id: str, needed: Role) -> WorkspaceView:
    """Load a workspace for ``actor`` needing at least ``needed``.

    Non-members get NotFound (the workspace is invisible to them); members with too
    small a role get PermissionDenied. Platform admins may do anything.
    """
    found = await uow.workspaces.get_with_member(workspace_id, actor.id)  # one query: on every request
    if found is None:
        raise NotFound("workspace not found")
    workspace, member = found
    return WorkspaceView(workspace, check_role(actor, member.role if member else None, needed))


def check_role(actor: User, role: Role | None, needed: Role) -> Role | None:
    """``authorize``'s rule on a found workspace and the caller's role in it (None: not a member)."""
    if role is None and not actor.is_admin:
        raise NotFound("workspace not found")
    if not actor.is_admin and not role.at_least(needed):
        raise PermissionDenied(f"needs the {needed.value} role or higher in this workspace", code="role_required")
    return role


async def authorize_hot(gate: HotReads, actor: User, workspace_id: str, needed: Role) -> tuple[Role | None, int]:
    """``authorize`` in one statement without a unit of work (``HotReads``), with the change
    epoch read in it: the caller's role and that epoch."""
    epoch, exists, role = await gate.membership(workspace_id, actor.id)
    if not exists:
        raise NotFound("workspace not found")
    return check_role(actor, Role(role) if role is not None else None, needed), epoch


@dataclass
class WorkspaceService:
    uow: UnitOfWorkFactory
    clock: Clock
    policy: WorkspacePolicy = field(default_factory=WorkspacePolicy)
    # Units of work for the hot reads (list_mine, get_quota); None: ``uow``.
    reads: UnitOfWorkFactory | None = None
    cache: EpochCache = field(default_factory=EpochCache)
    gate: HotReads | None = None  # the cached reads' membership check in one statement; None: through ``reads``

    async def create(self, actor: User, name: str) -> WorkspaceView:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("workspace name must be 1-100 characters", details={"field": "name"})
        if self.policy.creation is CreationPolicy.ADMINS and not actor.is_admin:
            raise PermissionDenied("on this platform only administrators create workspaces", code="workspace_creation_restricted")
        base = _SLUG_RE.sub("-", name.lower()).strip("-")[:40] or "workspace"
        now = self.clock.now()
        async with self.uow() as uow:
            # Serialise count-then-create, or parallel requests could all pass max_workspaces.
            await uow.lock_scheduling()
            if not actor.is_admin:  # operators create workspaces for teams, then hand them over
                await self.policy.check_can_own_another(uow, actor.id, actor.username)
            slug = base if not await uow.workspaces.slug_taken(base) else f"{base}-{new_id()[:8]}"
            workspace = Workspace(id=new_id(), name=name, slug=slug, is_personal=False, created_by=actor.id, created_at=now)
            await uow.workspaces.add(workspace)
            await uow.workspaces.add_member(Membership(workspace.id, actor.id, Role.OWNER, now))
            await audit.record(uow, self.clock, "workspace.created", actor_id=actor.id, target_type="workspace", target_id=workspace.id)
            await uow.commit()
        return WorkspaceView(workspace, Role.OWNER)

    async def list_mine(self, actor: User, *, limit: int, offset: int) -> tuple[list[WorkspaceView], int]:
        """The caller's workspaces with their role. Through the gate: as of the committed
        change epoch, which memberships and workspaces move (migrations 0023, 0030); the
        answer is shared while it stands (callers must not mutate it)."""
        if self.gate is not None:
            epoch = await self.gate.epoch()

            async def compute() -> tuple[list[WorkspaceView], int]:
                async with (self.reads or self.uow)() as uow:
                    rows, total = await uow.workspaces.list_for_user(actor.id, limit=limit, offset=offset)
                return [WorkspaceView(w, m.role) for w, m in rows], total

            return await self.cache.get_or_compute(epoch, ("mine", actor.id, limit, offset), compute)
        async with (self.reads or self.uow)() as uow:
            rows, total = await uow.workspaces.list_for_user(actor.id, limit=limit, offset=offset)
        return [WorkspaceView(w, m.role) for w, m in rows], total

    async def list_all(
        self, actor: User, *, search: str | None, limit: int, offset: int
    ) -> tuple[list[WorkspaceView], int]:
        """Every workspace on the platform (platform admins), with the caller's role where a member."""
        if not actor.is_admin:
            raise PermissionDenied("platform administrators only", code="admin_required")
        async with self.uow() as uow:
            found, total = await uow.workspaces.list_all(search=search or None, limit=limit, offset=offset)
            mine, _ = await uow.workspaces.list_for_user(actor.id, limit=10_000, offset=0)
        roles = {w.id: m.role for w, m in mine}
        return [WorkspaceView(w, roles.get(w.id)) for w in found], total

    async def get(self, actor: User, workspace_id: str) -> WorkspaceView:
        async with self.uow() as uow:
            return await authorize(uow, actor, workspace_id, Role.VIEWER)

    async def rename(self, actor: User, workspace_id: str, name: str) -> WorkspaceView:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("workspace name must be 1-100 characters", details={"field": "name"})
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, Role.ADMIN)
            view.workspace.name = name
            await uow.workspaces.update(view.workspace)
            await uow.commit()
        return view

    async def delete(self, actor: User, workspace_id: str) -> None:
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, Role.OWNER)
            if view.workspace.is_personal:
                raise Conflict("a personal workspace cannot be deleted", code="personal_workspace")
            usage = await uow.workspaces.usage(workspace_id)
            if usage.environments:
                raise Conflict("delete the workspace's environments first", code="workspace_not_empty")
            await uow.workspaces.delete(workspace_id)
            await audit.record(uow, self.clock, "workspace.deleted", actor_id=actor.id, target_type="workspace", target_id=workspace_id)
            await uow.commit()

    # --- members ----------------------------------------------------------------------
    async def list_members(self, actor: User, workspace_id: str) -> list[tuple[Membership, User]]:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
            members = await uow.workspaces.list_members(workspace_id)
            users = [await uow.users.get(m.user_id) for m in members]
        return [(m, u) for m, u in zip(members, users) if u is not None]

    async def add_member(self, actor: User, workspace_id: str, username: str, role: Role) -> tuple[Membership, User]:
        """Add a member without their consent: platform administrators only, and audited.

        Everyone else invites (``InvitationService.invite``); the invitee decides.
        """
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, Role.VIEWER)
            if not actor.is_admin:
                raise PermissionDenied(
                    "members join by accepting an invitation: POST /api/v1/workspaces/{id}/invitations",
                    code="invitation_required",
                )
            if view.workspace.is_personal:
                raise Conflict("a personal workspace has no other members; create a team workspace", code="personal_workspace")
            check_can_assign(self._effective_role(actor, view), None, role)
            user = await uow.users.get_by_username(username.strip().lower())
            if user is None or not user.is_active:
                raise NotFound("no active user with that username", code="user_not_found", details={"field": "username"})
            if await uow.workspaces.get_member(workspace_id, user.id):
                raise Conflict("user is already a member", code="already_member")
            membership = Membership(workspace_id, user.id, role, self.clock.now())
            await uow.workspaces.add_member(membership)
            await audit.record(uow, self.clock, "workspace.member.added", actor_id=actor.id, target_type="workspace", target_id=workspace_id, user_id=user.id, role=role.value, direct=True)
            await uow.commit()
        return membership, user

    async def change_role(self, actor: User, workspace_id: str, user_id: str, role: Role) -> Membership:
        async with self.uow() as uow:
            await uow.lock_scheduling()  # promoting to owner counts owned workspaces (see create)
            view = await authorize(uow, actor, workspace_id, Role.ADMIN)
            member = await uow.workspaces.get_member(workspace_id, user_id)
            if member is None:
                raise NotFound("member not found")
            check_can_assign(self._effective_role(actor, view), member.role, role)
            check_keeps_an_owner(await uow.workspaces.list_members(workspace_id), user_id, role)
            if role is Role.OWNER and member.role is not Role.OWNER and not view.workspace.is_personal:
                target = await uow.users.get(user_id)
                if target is not None and not target.is_admin:
                    await self.policy.check_can_own_another(uow, user_id, target.username)
            old = member.role
            member.role = role
            await uow.workspaces.update_member(member)
            await audit.record(uow, self.clock, "workspace.member.role_changed", actor_id=actor.id, target_type="workspace", target_id=workspace_id, user_id=user_id, old=old.value, new=role.value)
            await uow.commit()
        return member

    async def remove_member(self, actor: User, workspace_id: str, user_id: str) -> None:
        async with self.uow() as uow:
            leaving_self = user_id == actor.id
            view = await authorize(uow, actor, workspace_id, Role.VIEWER if leaving_self else Role.ADMIN)
            member = await uow.workspaces.get_member(workspace_id, user_id)
            if member is None:
                raise NotFound("member not found")
            if not leaving_self:
                check_can_assign(self._effective_role(actor, view), member.role, Role.VIEWER)
            check_keeps_an_owner(await uow.workspaces.list_members(workspace_id), user_id, None)
            await uow.workspaces.remove_member(workspace_id, user_id)
            await audit.record(uow, self.clock, "workspace.member.removed", actor_id=actor.id, target_type="workspace", target_id=workspace_id, user_id=user_id)
            await uow.commit()

    # --- quota ------------------------------------------------------------------------
    async def get_quota(self, actor: User, workspace_id: str) -> QuotaView:
        if self.gate is not None:
            _, epoch = await authorize_hot(self.gate, actor, workspace_id, Role.VIEWER)  # every request: never cached

            async def compute() -> QuotaView:
                async with (self.reads or self.uow)() as uow:
                    return await self._quota_view(uow, workspace_id)

            return await self.cache.get_or_compute(epoch, ("quota", workspace_id), compute)
        async with (self.reads or self.uow)() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)  # every request: never cached
            # The quota and what the workspace's environments hold, as of the committed
            # change epoch (application/shared/read_cache.py).
            return await self.cache.get_or_compute(
                await uow.environments.change_epoch(), ("quota", workspace_id), lambda: self._quota_view(uow, workspace_id)
            )

    async def reset_quota(self, actor: User, workspace_id: str) -> QuotaView:
        """Drop the workspace's own limits: the configured default applies again (platform admins)."""
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
            if not actor.is_admin:
                raise PermissionDenied("only platform administrators set quotas", code="admin_required")
            await uow.lock_scheduling()  # a raised quota lets the queue move (QueueingUnitOfWork)
            await uow.workspaces.clear_quota(workspace_id)
            await audit.record(uow, self.clock, "admin.quota.reset", actor_id=actor.id, target_type="workspace", target_id=workspace_id)
            await uow.commit()
            return await self._quota_view(uow, workspace_id)

    async def _quota_view(self, uow: UnitOfWork, workspace_id: str) -> QuotaView:
        quota, is_default = await self.policy.workspace_quota(uow, workspace_id)
        return QuotaView(quota, await uow.workspaces.usage(workspace_id), is_default)

    # --- per-user caps ------------------------------------------------------------------
    async def get_user_quota(self, actor: User, user_id: str) -> UserQuotaView:
        """A user's cap over the workspaces they own, with what those hold now (the user or platform admins)."""
        if user_id != actor.id and not actor.is_admin:
            raise PermissionDenied("platform administrators only", code="admin_required")
        async with self.uow() as uow:
            return await self._user_quota_view(uow, user_id)

    async def set_user_quota(self, actor: User, user_id: str, quota: UserQuota | None) -> UserQuotaView:
        """Set a user's own cap (platform admins); None goes back to the configured default."""
        if not actor.is_admin:
            raise PermissionDenied("only platform administrators set quotas", code="admin_required")
        async with self.uow() as uow:
            await uow.lock_scheduling()  # a raised cap lets the queue move (QueueingUnitOfWork)
            await self._user_quota_view(uow, user_id)  # 404 for an unknown user
            if quota is None:
                await uow.workspaces.clear_user_quota(user_id)
                await audit.record(uow, self.clock, "admin.user_quota.reset", actor_id=actor.id, target_type="user", target_id=user_id)
            else:
                await uow.workspaces.set_user_quota(user_id, quota)
                await audit.record(
                    uow, self.clock, "admin.user_quota.set", actor_id=actor.id, target_type="user", target_id=user_id,
                    max_workspaces=quota.max_workspaces, **quota.resources.__dict__,
                )
            await uow.commit()
            return await self._user_quota_view(uow, user_id)

    async def _user_quota_view(self, uow: UnitOfWork, user_id: str) -> UserQuotaView:
        user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        quota, is_default = await self.policy.cap_of(uow, user_id)
        return UserQuotaView(
            user, quota, await uow.workspaces.owned_usage(user_id), await uow.workspaces.count_owned(user_id), is_default
        )

    async def set_quota(self, actor: User, workspace_id: str, quota: Quota) -> QuotaView:
        if not actor.is_admin:
            # Members see the workspace, so 403 (not 404) tells them who sets quotas.
            async with self.uow() as uow:
                await authorize(uow, actor, workspace_id, Role.VIEWER)
            raise PermissionDenied("only platform administrators set quotas", code="admin_required")
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
            await uow.lock_scheduling()  # a raised quota lets the queue move (QueueingUnitOfWork)
            await uow.workspaces.set_quota(workspace_id, quota)
            await audit.record(uow, self.clock, "admin.quota.set", actor_id=actor.id, target_type="workspace", target_id=workspace_id, **{k: v for k, v in quota.__dict__.items()})
            await uow.commit()
            return await self._quota_view(uow, workspace_id)

    @staticmethod
    def _effective_role(actor: User, view: WorkspaceView) -> Role:
        # Platform admins act with owner rights in any workspace.
        return Role.OWNER if actor.is_admin else view.role
