"""Workspaces: who belongs to a tenant and what each member may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import Conflict, PermissionDenied


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
