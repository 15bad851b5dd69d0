"""In-memory repositories: the same contract as adapters/db, over a Transaction.

Orderings and tie-breaks mirror the SQL queries exactly, so the contract suite
can compare results row for row.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Callable, Iterable

from remotegpu.adapters.memory.transaction import Transaction
from remotegpu.domain.identity.models import ApiToken, AuditEvent, Invite, RefreshToken, SshKey, User
from remotegpu.domain.workspaces.models import Membership, Workspace
from remotegpu.domain.workspaces.quota import Quota, Usage


class _Repository:
    def __init__(self, tx: Transaction):
        self._tx = tx

    def _find(self, table: str, where: Callable[[Any], bool]) -> list[Any]:
        return [copy.deepcopy(row) for _, row in self._tx.rows(table) if where(row)]

    def _first(self, table: str, where: Callable[[Any], bool]) -> Any | None:
        found = self._find(table, where)
        return found[0] if found else None


def _page(rows: Iterable[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    rows = list(rows)
    return rows[offset : offset + limit], len(rows)


def _by_creation(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda r: (r.created_at, r.id))


class InMemoryUserRepository(_Repository):
    async def add(self, user: User) -> None:
        self._tx.insert("users", user.id, user)

    async def get(self, user_id: str) -> User | None:
        return self._tx.get("users", user_id)

    async def get_by_username(self, username: str) -> User | None:
        return self._first("users", lambda u: u.username == username)

    async def get_by_email(self, email: str) -> User | None:
        return self._first("users", lambda u: u.email == email)

    async def update(self, user: User) -> None:
        self._tx.update("users", user.id, user)

    async def list(self, *, search: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        term = (search or "").lower()
        found = self._find("users", lambda u: term in u.username.lower() or term in u.email.lower() or term in u.display_name.lower())
        return _page(_by_creation(found), limit, offset)

    async def count(self) -> int:
        return sum(1 for _ in self._tx.rows("users"))


class InMemoryApiTokenRepository(_Repository):
    async def add(self, token: ApiToken) -> None:
        self._tx.insert("api_tokens", token.id, token)

    async def get(self, token_id: str) -> ApiToken | None:
        return self._tx.get("api_tokens", token_id)

    async def get_by_hash(self, token_hash: str) -> ApiToken | None:
        return self._first("api_tokens", lambda t: t.token_hash == token_hash)

    async def list_for_user(self, user_id: str) -> list[ApiToken]:
        return _by_creation(self._find("api_tokens", lambda t: t.user_id == user_id))

    async def update(self, token: ApiToken) -> None:
        self._tx.update("api_tokens", token.id, token)


class InMemoryRefreshTokenRepository(_Repository):
    async def add(self, token: RefreshToken) -> None:
        self._tx.insert("refresh_tokens", token.id, token)

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return self._first("refresh_tokens", lambda t: t.token_hash == token_hash)

    async def update(self, token: RefreshToken) -> None:
        self._tx.update("refresh_tokens", token.id, token)

    async def revoke_family(self, family_id: str, at: datetime) -> None:
        self._revoke(lambda t: t.family_id == family_id, at)

    async def revoke_all_for_user(self, user_id: str, at: datetime) -> None:
        self._revoke(lambda t: t.user_id == user_id, at)

    def _revoke(self, where: Callable[[RefreshToken], bool], at: datetime) -> None:
        # Tokens revoked earlier keep their original revocation time.
        for token in self._find("refresh_tokens", lambda t: where(t) and t.revoked_at is None):
            token.revoked_at = at
            self._tx.update("refresh_tokens", token.id, token)

    async def delete_expired(self, before: datetime) -> int:
        expired = self._find("refresh_tokens", lambda t: t.expires_at < before)
        return sum(self._tx.delete("refresh_tokens", t.id) for t in expired)


class InMemorySshKeyRepository(_Repository):
    async def add(self, key: SshKey) -> None:
        self._tx.insert("ssh_keys", key.id, key)

    async def get(self, key_id: str) -> SshKey | None:
        return self._tx.get("ssh_keys", key_id)

    async def list_for_user(self, user_id: str) -> list[SshKey]:
        return _by_creation(self._find("ssh_keys", lambda k: k.user_id == user_id))

    async def get_by_fingerprint(self, user_id: str, fingerprint: str) -> SshKey | None:
        return self._first("ssh_keys", lambda k: k.user_id == user_id and k.fingerprint == fingerprint)

    async def delete(self, key_id: str) -> None:
        self._tx.delete("ssh_keys", key_id)


class InMemoryInviteRepository(_Repository):
    async def add(self, invite: Invite) -> None:
        self._tx.insert("invites", invite.id, invite)

    async def get_by_hash(self, code_hash: str) -> Invite | None:
        return self._first("invites", lambda i: i.code_hash == code_hash)

    async def update(self, invite: Invite) -> None:
        self._tx.update("invites", invite.id, invite)


class InMemoryAuditLog(_Repository):
    async def add(self, event: AuditEvent) -> None:
        self._tx.insert("audit_events", event.id, event)

    async def list(
        self, *, action: str | None, actor_id: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        found = self._find(
            "audit_events",
            lambda e: (action is None or e.action == action) and (actor_id is None or e.actor_id == actor_id),
        )
        return _page(reversed(_by_creation(found)), limit, offset)

    async def delete_before(self, before: datetime) -> int:
        old = self._find("audit_events", lambda e: e.created_at < before)
        return sum(self._tx.delete("audit_events", e.id) for e in old)


class InMemoryWorkspaceRepository(_Repository):
    async def add(self, workspace: Workspace) -> None:
        self._tx.insert("workspaces", workspace.id, workspace)

    async def get(self, workspace_id: str) -> Workspace | None:
        return self._tx.get("workspaces", workspace_id)

    async def update(self, workspace: Workspace) -> None:
        self._tx.update("workspaces", workspace.id, workspace)

    async def delete(self, workspace_id: str) -> None:
        self._tx.delete("workspaces", workspace_id)  # cascades to members and quota

    async def slug_taken(self, slug: str) -> bool:
        return self._first("workspaces", lambda w: w.slug == slug) is not None

    async def list_for_user(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[tuple[Workspace, Membership]], int]:
        memberships = self._find("workspace_members", lambda m: m.user_id == user_id)
        pairs = [(self._tx.get("workspaces", m.workspace_id), m) for m in memberships]
        pairs.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
        return _page(pairs, limit, offset)

    async def list_all(self, *, limit: int, offset: int) -> tuple[list[Workspace], int]:
        return _page(_by_creation(self._find("workspaces", lambda w: True)), limit, offset)

    # --- members ----------------------------------------------------------------------
    async def add_member(self, membership: Membership) -> None:
        self._tx.insert("workspace_members", (membership.workspace_id, membership.user_id), membership)

    async def get_member(self, workspace_id: str, user_id: str) -> Membership | None:
        return self._tx.get("workspace_members", (workspace_id, user_id))

    async def update_member(self, membership: Membership) -> None:
        # Only the role changes, as in SQL: the membership's creation time is fixed.
        current = self._tx.get("workspace_members", (membership.workspace_id, membership.user_id))
        if current is not None:
            current.role = membership.role
            self._tx.update("workspace_members", (membership.workspace_id, membership.user_id), current)

    async def remove_member(self, workspace_id: str, user_id: str) -> None:
        self._tx.delete("workspace_members", (workspace_id, user_id))

    async def list_members(self, workspace_id: str) -> list[Membership]:
        members = self._find("workspace_members", lambda m: m.workspace_id == workspace_id)
        return sorted(members, key=lambda m: (m.created_at, m.user_id))

    # --- quota --------------------------------------------------------------------------
    async def get_quota(self, workspace_id: str) -> Quota:
        row = self._tx.get("workspace_quotas", workspace_id)
        return Quota() if row is None else row[1]

    async def set_quota(self, workspace_id: str, quota: Quota) -> None:
        row = (workspace_id, quota)
        if self._tx.get("workspace_quotas", workspace_id) is None:
            self._tx.insert("workspace_quotas", workspace_id, row)
        else:
            self._tx.update("workspace_quotas", workspace_id, row)

    async def usage(self, workspace_id: str) -> Usage:
        """Nothing holds resources yet.

        When environments arrive, add up the live environments of ``workspace_id``
        here (their GPUs, CPU cores, memory and storage), as the SQL adapter will.
        """
        return Usage()
