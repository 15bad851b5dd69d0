"""Workspaces: who belongs to a tenant and what each member may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import Conflict, NotFound, PermissionDenied


class Role(str, Enum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: "Role") -> bool:
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


@dataclass
class Workspace:
    id: str
    name: str
    slug: str
    is_personal: bool
    created_by: str
    created_at: datetime


@dataclass
class Membership:
    workspace_id: str
    user_id: str
    role: Role
    created_at: datetime


def check_can_assign(actor: Role, current: Role | None, new: Role) -> None:
    """Admins manage members and viewers; only owners create or touch owners and admins."""
    if not actor.at_least(Role.ADMIN):
        raise PermissionDenied("only workspace owners and admins manage members")
    touches_privileged = new.at_least(Role.ADMIN) or (current is not None and current.at_least(Role.ADMIN))
    if touches_privileged and actor is not Role.OWNER:
        raise PermissionDenied("only an owner can grant, change or remove the owner and admin roles")


def check_keeps_an_owner(members: list[Membership], user_id: str, new_role: Role | None) -> None:
    """The last owner can neither leave nor be demoted: a workspace always has an owner."""
    owners = [m for m in members if m.role is Role.OWNER]
    is_owner = any(m.user_id == user_id for m in owners)
    if is_owner and len(owners) == 1 and new_role is not Role.OWNER:
        raise Conflict(
            "the last owner cannot leave or be demoted; make someone else owner first",
            code="last_owner",
        )


class InvitationStatus(str, Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"


@dataclass
class Invitation:
    """An offer of a role in a workspace; only the invitee's acceptance makes them a member.

    Kept after it is answered (status other than pending) as a record of who agreed to what.
    """

    id: str
    workspace_id: str
    user_id: str  # the invitee
    role: Role
    invited_by: str
    created_at: datetime
    expires_at: datetime
    status: InvitationStatus = InvitationStatus.PENDING
    responded_at: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        return self.status is InvitationStatus.PENDING and now < self.expires_at

    def check_open(self, now: datetime) -> None:
        """An answered, revoked or expired invitation can no longer be used."""
        if self.status is not InvitationStatus.PENDING:
            raise Conflict(f"the invitation was already {self.status.value}", code="invitation_closed",
                           details={"status": self.status.value})
        if now >= self.expires_at:
            raise Conflict("the invitation has expired; ask for a new one", code="invitation_expired",
                           details={"expires_at": self.expires_at.isoformat()})


def check_invitation_addressee(invitation: Invitation | None, user_id: str) -> Invitation:
    """Someone else's invitation does not exist for the caller (404, like another tenant's object)."""
    if invitation is None or invitation.user_id != user_id:
        raise NotFound("invitation not found")
    return invitation
