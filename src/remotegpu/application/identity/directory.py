"""Sign-in against an LDAP / Active Directory server (issue 20).

The directory checks the password (a bind as the person's entry); the platform keeps
no password for such users. On every sign-in the account is made to match the entry:
created on the first one (with a personal workspace, like a registration), its email
and display name refreshed, platform admin granted or taken by group, and workspace
memberships granted, re-ranked or ended for the workspaces the mapping names. A
workspace the mapping does not name is never touched, so memberships granted on the
platform itself survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from remotegpu.application.identity import audit
from remotegpu.application.identity.ports import DirectoryEntry
from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.application.workspaces.personal import create_personal_workspace
from remotegpu.domain.identity.models import User, normalize_email, normalize_username
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Membership, Role

LDAP = "ldap"


@dataclass(frozen=True)
class GroupGrant:
    group: str  # the directory group's cn
    workspace_id: str
    role: Role


@dataclass(frozen=True)
class DirectoryPolicy:
    # Members of any of these groups are platform admins; empty: the directory never
    # decides who is an admin (admins are made on the platform).
    admin_groups: frozenset[str] = frozenset()
    grants: tuple[GroupGrant, ...] = field(default_factory=tuple)

    def is_admin(self, entry: DirectoryEntry) -> bool | None:
        return bool(self.admin_groups & entry.groups) if self.admin_groups else None

    def roles(self, entry: DirectoryEntry) -> dict[str, Role | None]:
        """For each workspace the mapping names: the highest role the entry's groups
        give, or None (no group of the entry names it: no membership)."""
        roles: dict[str, Role | None] = {}
        for grant in self.grants:
            best = roles.get(grant.workspace_id)
            if grant.group in entry.groups and (best is None or grant.role.at_least(best)):
                roles[grant.workspace_id] = grant.role
            else:
                roles.setdefault(grant.workspace_id, None)
        return roles


async def account_for(uow: UnitOfWork, clock: Clock, policy: DirectoryPolicy, entry: DirectoryEntry,
                      user: User | None, ip: str | None, *, source: str = LDAP) -> User:
    """The platform account of a directory entry that just bound (or of an identity
    provider's subject that just signed in: ``source`` "oidc"), made to match it.

    A directory's username is authoritative (LDAP: a name a local account holds is
    refused); an identity provider's is a suggestion (OIDC: a taken one gets a suffix,
    since the account is found by its subject, never by name)."""
    now = clock.now()
    email = normalize_email(entry.email) if entry.email else f"{_username_from(entry.username)}@{source}.invalid"
    if user is None:
        username = normalize_username(entry.username) if source == LDAP else _username_from(entry.username)
        if source != LDAP:
            base, n = username, 1
            while await uow.users.get_by_username(username) is not None:
                n += 1
                username = f"{base[:28]}-{n}"
        if await uow.users.get_by_username(username) is not None:
            # A local account already has the name: never merge the two silently.
            raise Conflict("a local account already uses this username; ask an administrator", code="username_taken")
        if await uow.users.get_by_email(email) is not None:
            raise Conflict("another account already uses this email address; ask an administrator", code="email_taken")
        user = User(id=new_id(), username=username, email=email, password_hash="", created_at=now,
                    display_name=entry.display_name[:100], auth_source=source, external_id=entry.external_id)
        await uow.users.add(user)
        await create_personal_workspace(uow, user, now)
        await audit.record(uow, clock, "user.registered", actor_id=user.id, target_type="user", target_id=user.id, ip=ip,
                           source=source)
    else:
        if email != user.email and (other := await uow.users.get_by_email(email)) is not None and other.id != user.id:
            email = user.email  # the directory's new address belongs to someone else here: keep the old one
        user.email, user.display_name, user.external_id = email, entry.display_name[:100] or user.display_name, entry.external_id
    admin = policy.is_admin(entry)
    if admin is not None and admin != user.is_admin:
        user.is_admin = admin
        await audit.record(uow, clock, "user.admin_granted" if admin else "user.admin_revoked", actor_id=None,
                           target_type="user", target_id=user.id, source=source)
    await _sync_memberships(uow, clock, policy, entry, user, now, source)
    return user


def _username_from(suggestion: str) -> str:
    """A valid platform username from what a provider suggests (preferred_username, an
    email's local part): lower-case, disallowed characters as '-', 3-32 characters."""
    name = re.sub(r"[^a-z0-9_.-]", "-", suggestion.split("@")[0].strip().lower()).strip("-._")[:32]
    return name if len(name) >= 3 else f"user-{name}".strip("-")[:32] if name else "user"


async def _sync_memberships(uow: UnitOfWork, clock: Clock, policy: DirectoryPolicy, entry: DirectoryEntry,
                            user: User, now: datetime, source: str) -> None:
    for workspace_id, role in policy.roles(entry).items():
        if await uow.workspaces.get(workspace_id) is None:
            continue  # a mapping to a deleted workspace grants nothing
        current = await uow.workspaces.get_member(workspace_id, user.id)
        if current is not None and current.role is Role.OWNER:
            continue  # owners are made on the platform, never by the directory
        if role is None:
            if current is not None:
                await uow.workspaces.remove_member(workspace_id, user.id)
                await audit.record(uow, clock, "workspace.member_removed", actor_id=None, target_type="workspace",
                                   target_id=workspace_id, user_id=user.id, source=source)
        elif current is None:
            await uow.workspaces.add_member(Membership(workspace_id, user.id, role, now))
            await audit.record(uow, clock, "workspace.member_added", actor_id=None, target_type="workspace",
                               target_id=workspace_id, user_id=user.id, role=role.value, source=source)
        elif current.role is not role:
            current.role = role
            await uow.workspaces.update_member(current)
