"""Workspace invitations: membership needs the invitee's consent.

A workspace owner or admin invites a user (by username or email) with a role; the
invitee sees the invitation and accepts or declines it; the workspace's owners and
admins see pending ones and may revoke them; an invitation expires after the policy's
TTL. Only acceptance creates the membership. (Platform administrators can still add a
member directly — ``WorkspaceService.add_member`` — and that is audited.)

Visibility: an invitation is visible to its invitee and to whoever manages its
workspace; to anyone else it does not exist (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remotegpu.application.identity import audit
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import WorkspaceView, authorize
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    Workspace,
    check_can_assign,
    check_invitation_addressee,
)


@dataclass(frozen=True)
class InvitationView:
    invitation: Invitation
    workspace: Workspace
    invitee: User
    inviter: User | None  # None when the inviter's account is gone


@dataclass
class InvitationService:
    uow: UnitOfWorkFactory
    clock: Clock
    policy: WorkspacePolicy = field(default_factory=WorkspacePolicy)

    # --- the workspace side -------------------------------------------------------------
    async def invite(
        self, actor: User, workspace_id: str, role: Role, *, username: str | None = None, email: str | None = None
    ) -> InvitationView:
        if (username is None) == (email is None):
            raise InvalidInput("give either a username or an email", details={"field": "username"})
        now = self.clock.now()
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, Role.ADMIN)
            if view.workspace.is_personal:
                raise Conflict("a personal workspace has no other members; create a team workspace", code="personal_workspace")
            check_can_assign(_acting_role(actor, view), None, role)
            if username is not None:
                invitee = await uow.users.get_by_username(username.strip().lower())
            else:
                invitee = await uow.users.get_by_email(email.strip().lower())
            if invitee is None or not invitee.is_active:
                field_name = "username" if username is not None else "email"
                raise NotFound(f"no active user with that {field_name}", code="user_not_found", details={"field": field_name})
            if await uow.workspaces.get_member(workspace_id, invitee.id):
                raise Conflict("user is already a member", code="already_member")
            pending = await uow.workspaces.list_open_invitations(now=now, workspace_id=workspace_id, user_id=invitee.id)
            if pending:
                raise Conflict(
                    "user already has a pending invitation to this workspace; revoke it to invite again",
                    code="already_invited", details={"invitation_id": pending[0].id},
                )
            invitation = Invitation(
                id=new_id(), workspace_id=workspace_id, user_id=invitee.id, role=role, invited_by=actor.id,
                created_at=now, expires_at=now + self.policy.invitation_ttl,
            )
            await uow.workspaces.add_invitation(invitation)
            await audit.record(
                uow, self.clock, "workspace.invitation.created", actor_id=actor.id, target_type="workspace",
                target_id=workspace_id, invitation_id=invitation.id, user_id=invitee.id, role=role.value,
            )
            await uow.commit()
        return InvitationView(invitation, view.workspace, invitee, actor)

    async def list_for_workspace(self, actor: User, workspace_id: str) -> list[InvitationView]:
        """Pending invitations of a workspace (its owners and admins)."""
        async with self.uow() as uow:
            view = await authorize(uow, actor, workspace_id, Role.ADMIN)
            found = await uow.workspaces.list_open_invitations(now=self.clock.now(), workspace_id=workspace_id)
            return [await self._view(uow, i, view.workspace) for i in found]

    async def revoke(self, actor: User, workspace_id: str, invitation_id: str) -> None:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.ADMIN)
            invitation = await uow.workspaces.get_invitation(invitation_id)
            if invitation is None or invitation.workspace_id != workspace_id:
                raise NotFound("invitation not found")
            invitation.check_open(self.clock.now())
            await self._close(uow, invitation, InvitationStatus.REVOKED, actor)
            await uow.commit()

    # --- the invitee's side -------------------------------------------------------------
    async def list_mine(self, actor: User) -> list[InvitationView]:
        async with self.uow() as uow:
            found = await uow.workspaces.list_open_invitations(now=self.clock.now(), user_id=actor.id)
            views = []
            for invitation in found:
                workspace = await uow.workspaces.get(invitation.workspace_id)
                if workspace is not None:
                    views.append(await self._view(uow, invitation, workspace))
            return views

    async def accept(self, actor: User, invitation_id: str) -> WorkspaceView:
        """Become a member with the invited role; the workspace then lists the caller."""
        async with self.uow() as uow:
            # Accepting as owner counts owned workspaces, as WorkspaceService.create does; taken
            # first, before any read or write, as the lock asks (answering is rare: no contention).
            await uow.lock_scheduling()
            invitation = check_invitation_addressee(await uow.workspaces.get_invitation(invitation_id), actor.id)
            now = self.clock.now()
            invitation.check_open(now)
            workspace = await uow.workspaces.get(invitation.workspace_id)
            if workspace is None:
                raise NotFound("invitation not found")
            await self._check_inviter_still_may(uow, invitation, workspace)
            if await uow.workspaces.get_member(workspace.id, actor.id):
                raise Conflict("you are already a member of this workspace", code="already_member")
            if invitation.role is Role.OWNER and not actor.is_admin:
                await self.policy.check_can_own_another(uow, actor.id, actor.username)
            await self._close(uow, invitation, InvitationStatus.ACCEPTED, actor)
            await uow.workspaces.add_member(Membership(workspace.id, actor.id, invitation.role, now))
            await audit.record(
                uow, self.clock, "workspace.member.added", actor_id=actor.id, target_type="workspace",
                target_id=workspace.id, user_id=actor.id, role=invitation.role.value, invitation_id=invitation.id,
                invited_by=invitation.invited_by,
            )
            await uow.commit()
        return WorkspaceView(workspace, invitation.role)

    async def decline(self, actor: User, invitation_id: str) -> None:
        async with self.uow() as uow:
            invitation = check_invitation_addressee(await uow.workspaces.get_invitation(invitation_id), actor.id)
            invitation.check_open(self.clock.now())
            await self._close(uow, invitation, InvitationStatus.DECLINED, actor)
            await uow.commit()

    # --- helpers ------------------------------------------------------------------------
    async def _close(self, uow: UnitOfWork, invitation: Invitation, status: InvitationStatus, actor: User) -> None:
        # Compare-and-set: of two concurrent answers (accept + revoke, accept twice) one wins.
        if not await uow.workspaces.close_invitation(invitation.id, status, self.clock.now()):
            raise Conflict("the invitation was answered or revoked meanwhile", code="invitation_closed")
        invitation.status = status
        await audit.record(
            uow, self.clock, f"workspace.invitation.{status.value}", actor_id=actor.id, target_type="workspace",
            target_id=invitation.workspace_id, invitation_id=invitation.id, user_id=invitation.user_id,
        )

    @staticmethod
    async def _check_inviter_still_may(uow: UnitOfWork, invitation: Invitation, workspace: Workspace) -> None:
        """An invitation carries its inviter's authority: gone if they lost the right to grant that role."""
        inviter = await uow.users.get(invitation.invited_by)
        member = await uow.workspaces.get_member(workspace.id, invitation.invited_by)
        acting = Role.OWNER if inviter is not None and inviter.is_admin and inviter.is_active else (member.role if member else None)
        try:
            if acting is None:
                raise PermissionDenied("inviter left")
            check_can_assign(acting, None, invitation.role)
        except PermissionDenied:
            raise Conflict(
                "whoever invited you can no longer grant this role; ask for a new invitation", code="invitation_stale"
            ) from None

    @staticmethod
    async def _view(uow: UnitOfWork, invitation: Invitation, workspace: Workspace) -> InvitationView:
        invitee = await uow.users.get(invitation.user_id)
        inviter = await uow.users.get(invitation.invited_by)
        return InvitationView(invitation, workspace, invitee, inviter)


def _acting_role(actor: User, view: WorkspaceView) -> Role:
    # Platform admins act with owner rights in any workspace.
    return Role.OWNER if actor.is_admin else view.role
