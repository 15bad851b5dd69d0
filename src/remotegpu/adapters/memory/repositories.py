"""In-memory repositories: the same contract as adapters/db, over a Transaction.

Orderings and tie-breaks mirror the SQL queries exactly, so the contract suite
can compare results row for row.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Iterable

from remotegpu.adapters.memory.store import stored_copy
from remotegpu.adapters.memory.transaction import Transaction
from remotegpu.domain.environments.models import Environment, EnvironmentEvent, EnvStatus, GpuAllocation, HostPort
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.identity.models import ApiToken, AuditEvent, Invite, RefreshToken, SshKey, User
from remotegpu.domain.workspaces.models import Invitation, InvitationStatus, Membership, Role, Workspace
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota


class _Repository:
    def __init__(self, tx: Transaction):
        self._tx = tx

    def _find(self, table: str, where: Callable[[Any], bool]) -> list[Any]:
        return [copy.deepcopy(row) for _, row in self._tx.rows(table) if where(row)]

    def _first(self, table: str, where: Callable[[Any], bool]) -> Any | None:
        found = self._find(table, where)
        return found[0] if found else None


@dataclass(frozen=True)
class _Held:
    """A live environment's allocation, as the scheduler's FleetState takes it."""

    host_id: str
    gpu_uuids: tuple[str, ...]
    cpu_cores: int
    memory_gib: int


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

    async def get_by_external_id(self, auth_source: str, external_id: str) -> User | None:
        return self._first("users", lambda u: u.auth_source == auth_source and u.external_id == external_id)

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

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        # The store has no row locks, and another unit of work may claim the same token
        # before this one commits: the claim is written through to the committed row at
        # once (as a row lock that is never rolled back: a refresh that fails after the
        # claim leaves the token used, which fails closed).
        committed = self._tx._store.tables["refresh_tokens"]
        token, row = self._tx.get("refresh_tokens", token_id), committed.get(token_id)
        if any(t is not None and (t.used_at is not None or t.revoked_at is not None) for t in (token, row)) or token is None:
            return False
        token.used_at = at
        if row is not None:
            committed[token_id] = stored_copy(replace(row, used_at=at))
        self._tx.update("refresh_tokens", token_id, token)
        return True

    async def revoke_family(self, family_id: str, at: datetime) -> None:
        self._revoke(lambda t: t.family_id == family_id, at)

    async def revoke_all_for_user(self, user_id: str, at: datetime, *, except_family: str | None = None) -> None:
        self._revoke(lambda t: t.user_id == user_id and t.family_id != except_family, at)

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

    async def get_with_member(self, workspace_id: str, user_id: str) -> tuple[Workspace, Membership | None] | None:
        workspace = self._tx.get("workspaces", workspace_id)
        return None if workspace is None else (workspace, await self.get_member(workspace_id, user_id))

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

    async def list_all(self, *, search: str | None = None, limit: int, offset: int) -> tuple[list[Workspace], int]:
        term = (search or "").lower()
        found = self._find("workspaces", lambda w: term in w.name.lower() or term in w.slug.lower())
        return _page(_by_creation(found), limit, offset)

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

    def _owned_by(self, user_id: str) -> set[str]:
        return {m.workspace_id for m in self._find("workspace_members", lambda m: m.user_id == user_id and m.role is Role.OWNER)}

    async def list_owners(self, workspace_id: str) -> list[str]:
        owners = self._find("workspace_members", lambda m: m.workspace_id == workspace_id and m.role is Role.OWNER)
        return sorted(m.user_id for m in owners)

    async def count_owned(self, user_id: str) -> int:
        owned = self._owned_by(user_id)
        return len(self._find("workspaces", lambda w: w.id in owned and not w.is_personal))

    # --- quota --------------------------------------------------------------------------
    async def get_quota(self, workspace_id: str) -> Quota | None:
        row = self._tx.get("workspace_quotas", workspace_id)
        return None if row is None else row[1]

    async def set_quota(self, workspace_id: str, quota: Quota) -> None:
        self._upsert("workspace_quotas", workspace_id, (workspace_id, quota))

    async def clear_quota(self, workspace_id: str) -> None:
        self._tx.delete("workspace_quotas", workspace_id)

    async def get_user_quota(self, user_id: str) -> UserQuota | None:
        row = self._tx.get("user_quotas", user_id)
        return None if row is None else row[1]

    async def set_user_quota(self, user_id: str, quota: UserQuota) -> None:
        self._upsert("user_quotas", user_id, (user_id, quota))

    async def clear_user_quota(self, user_id: str) -> None:
        self._tx.delete("user_quotas", user_id)

    def _upsert(self, table: str, key: str, row: Any) -> None:
        if self._tx.get(table, key) is None:
            self._tx.insert(table, key, row)
        else:
            self._tx.update(table, key, row)

    async def usage(self, workspace_id: str) -> Usage:
        return self._usage({workspace_id})

    async def owned_usage(self, user_id: str) -> Usage:
        return self._usage(self._owned_by(user_id))

    def _usage(self, workspace_ids: set[str]) -> Usage:
        """What those workspaces' environments hold now (same rules as the SQL adapter).

        gpus: live GPU allocations of its environments; environments: those not
        deleted; cpu_cores / memory_gib: summed over environments whose status holds
        resources (starting, running, lost); storage_gib: disk_gib summed over those not
        deleted (a stopped environment keeps its disk).
        """
        envs = self._find("environments", lambda e: e.workspace_id in workspace_ids)
        ids = {e.id for e in envs}
        holding = [e for e in envs if e.status.holds_resources]
        return Usage(
            gpus=sum(1 for _, a in self._tx.rows("gpu_allocations") if a.environment_id in ids),
            environments=sum(1 for e in envs if e.status.holds_disk),
            cpu_cores=sum(e.cpu_cores for e in holding),
            memory_gib=sum(e.memory_gib for e in holding),
            storage_gib=sum(e.disk_gib for e in envs if e.status.holds_disk),
        )

    # --- invitations --------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        self._tx.insert("workspace_invitations", invitation.id, invitation)

    async def get_invitation(self, invitation_id: str) -> Invitation | None:
        return self._tx.get("workspace_invitations", invitation_id)

    async def list_open_invitations(
        self, *, now: datetime, workspace_id: str | None = None, user_id: str | None = None
    ) -> list[Invitation]:
        found = self._find(
            "workspace_invitations",
            lambda i: i.status is InvitationStatus.PENDING and i.expires_at > now
            and (workspace_id is None or i.workspace_id == workspace_id) and (user_id is None or i.user_id == user_id),
        )
        return _by_creation(found)

    async def close_invitation(self, invitation_id: str, status: InvitationStatus, at: datetime) -> bool:
        current = self._tx.get("workspace_invitations", invitation_id)
        if current is None or current.status is not InvitationStatus.PENDING:
            return False
        self._tx.update("workspace_invitations", invitation_id, replace(current, status=status, responded_at=at))
        return True


# --- fleet ----------------------------------------------------------------------------


class InMemoryHostRepository(_Repository):
    """Hosts in ``hosts`` (without GPUs), their GPUs in ``host_gpus``, as in SQL."""

    async def add(self, host: Host) -> None:
        self._tx.insert("hosts", host.id, replace(host, gpus=[]))
        self._insert_gpus(host)

    async def get(self, host_id: str) -> Host | None:
        return self._with_gpus(self._tx.get("hosts", host_id))

    async def get_by_name(self, name: str) -> Host | None:
        return self._with_gpus(self._first("hosts", lambda h: h.name == name))

    async def get_by_join_token(self, token_hash: str) -> Host | None:
        return self._with_gpus(self._first("hosts", lambda h: h.join_token_hash == token_hash))

    async def get_by_agent_token(self, token_hash: str) -> Host | None:
        return self._with_gpus(self._first("hosts", lambda h: h.agent_token_hash == token_hash))

    async def update(self, host: Host) -> None:
        if self._tx.get("hosts", host.id) is None:
            return
        self._tx.update("hosts", host.id, replace(host, gpus=[]))
        # Replace this host's inventory only; a UUID another host owns is refused like
        # the SQL UNIQUE(uuid) constraint does (the caller keeps such GPUs out).
        for key, _ in list(self._tx.rows("host_gpus")):
            if key[0] == host.id:
                self._tx.delete("host_gpus", key)
        taken = {gpu.uuid for _, (_, gpu) in self._tx.rows("host_gpus")}
        if any(gpu.uuid in taken for gpu in host.gpus):
            raise Conflict("a GPU UUID is already registered to another host")
        self._insert_gpus(host)

    async def gpu_owners(self, uuids) -> dict[str, str]:
        wanted = set(uuids)
        return {gpu.uuid: host_id for _, (host_id, gpu) in self._tx.rows("host_gpus") if gpu.uuid in wanted}

    async def list(self) -> list[Host]:
        return sorted((self._with_gpus(h) for h in self._find("hosts", lambda h: True)), key=lambda h: (h.name, h.id))

    async def list_silent_since(self, before: datetime) -> list[Host]:
        found = self._find("hosts", lambda h: h.last_heartbeat_at is not None and h.last_heartbeat_at < before)
        return sorted((self._with_gpus(h) for h in found), key=lambda h: (h.name, h.id))

    async def gpu_types(self) -> dict[str, tuple[int, int, int]]:
        from remotegpu.domain.scheduling import FleetState

        hosts = await self.list()
        held: dict[str, list[str]] = {}
        for _, a in self._tx.rows("gpu_allocations"):
            held.setdefault(a.environment_id, []).append(a.gpu_uuid)
        envs = [e for _, e in self._tx.rows("environments") if e.status.holds_resources and e.host_id is not None]
        fleet = FleetState(hosts, [_Held(e.host_id, tuple(held.get(e.id, ())), e.cpu_cores, e.memory_gib) for e in envs])
        memory: dict[str, int] = {}
        for capacity in fleet.hosts():
            if capacity.schedulable:
                for gpu in capacity.host.gpus:
                    if gpu.healthy:
                        memory[gpu.model] = max(memory.get(gpu.model, 0), gpu.memory_mib)
        return {model: (total, free, memory[model]) for model, (total, free) in fleet.gpu_counts().items()}

    async def delete(self, host_id: str) -> None:
        self._tx.delete("hosts", host_id)  # cascades to host_gpus

    def _insert_gpus(self, host: Host) -> None:
        for gpu in host.gpus:
            self._tx.insert("host_gpus", (host.id, gpu.index), (host.id, gpu))

    def _with_gpus(self, host: Host | None) -> Host | None:
        if host is None:
            return None
        gpus = [gpu for (host_id, _), (_, gpu) in self._tx.rows("host_gpus") if host_id == host.id]
        host.gpus = sorted(gpus, key=lambda g: g.index)
        return host


# --- environments -----------------------------------------------------------------------


class InMemoryEnvironmentRepository(_Repository):
    """Environments in ``environments``; their log in ``environment_events`` as
    (seq, event) rows, ``seq`` counting up per environment (ties of ``at`` keep the
    order in which events were appended)."""

    async def add(self, env: Environment) -> None:
        self._tx.insert("environments", env.id, replace(env, pending_events=[]))
        self._flush_events(env)

    async def get(self, env_id: str) -> Environment | None:
        return self._tx.get("environments", env_id)

    async def change_epoch(self) -> int | None:
        return self._tx.change_epoch()

    async def update(self, env: Environment) -> None:
        if self._tx.get("environments", env.id) is None:
            return
        self._tx.update("environments", env.id, replace(env, pending_events=[]))
        self._flush_events(env)

    async def list(
        self, *, workspace_ids: list[str] | None, statuses: list[EnvStatus] | None, include_deleted: bool,
        limit: int, offset: int,
    ) -> tuple[list[Environment], int]:
        found = self._find(
            "environments",
            lambda e: (workspace_ids is None or e.workspace_id in workspace_ids)
            and (statuses is None or e.status in statuses)
            and (include_deleted or e.status is not EnvStatus.DELETED),
        )
        return _page(reversed(_by_creation(found)), limit, offset)

    async def list_for_host(self, host_id: str) -> list[Environment]:
        found = self._find("environments", lambda e: e.host_id == host_id and e.status is not EnvStatus.DELETED)
        return _by_creation(found)

    async def list_by_status(self, statuses: list[EnvStatus]) -> list[Environment]:
        found = self._find("environments", lambda e: e.status in statuses)
        # SQL: ORDER BY queued_at NULLS LAST, created_at, id
        return sorted(found, key=lambda e: (e.queued_at is None, e.queued_at or e.created_at, e.created_at, e.id))

    async def list_autostop_due(self, now: datetime) -> list[Environment]:
        found = self._find("environments", lambda e: e.autostop_due_at is not None and e.autostop_due_at <= now)
        return sorted(found, key=lambda e: (e.autostop_due_at, e.id))

    async def held_resources(self) -> list[tuple[str, str, int, int]]:
        holding = await self.list_by_status([s for s in EnvStatus if s.holds_resources])
        return [(e.id, e.host_id, e.cpu_cores, e.memory_gib) for e in holding if e.host_id is not None]

    async def listings(
        self, *, workspace_id: str | None = None, member_id: str | None = None, env_id: str | None = None,
        statuses: list[EnvStatus] | None = None, limit: int, offset: int,
    ):
        from remotegpu.application.environments.ports import EnvironmentListing

        member_of = None if member_id is None else {
            m.workspace_id for _, m in self._tx.rows("workspace_members") if m.user_id == member_id
        }
        found = self._find(
            "environments",
            lambda e: e.status is not EnvStatus.DELETED
            and (workspace_id is None or e.workspace_id == workspace_id)
            and (member_of is None or e.workspace_id in member_of)
            and (env_id is None or e.id == env_id)
            and (statuses is None or e.status in statuses),
        )
        page, total = _page(reversed(_by_creation(found)), limit, offset)
        queue = await self.list_by_status([EnvStatus.QUEUED])
        positions = {e.id: i for i, e in enumerate(queue, start=1)}
        listings = []
        for env in page:
            host = self._tx.get("hosts", env.host_id) if env.host_id else None
            held = {uuid for (eid, uuid), _ in self._tx.rows("gpu_allocations") if eid == env.id}
            gpus = sorted(
                (copy.deepcopy(gpu) for (hid, _), (_, gpu) in self._tx.rows("host_gpus") if hid == env.host_id and gpu.uuid in held),
                key=lambda g: g.index,
            )
            ports = sorted(self._find("host_ports", lambda p: p.environment_id == env.id), key=lambda p: (p.host_id, p.port))
            listings.append(EnvironmentListing(env, positions.get(env.id), host.name if host else None, gpus, ports))
        return listings, total

    async def events(self, env_id: str, *, limit: int, offset: int) -> tuple[list[EnvironmentEvent], int]:
        rows = sorted(
            (row for _, row in self._tx.rows("environment_events") if row[1].environment_id == env_id),
            key=lambda row: (row[1].at, row[0]),
        )
        return _page((copy.deepcopy(event) for _, event in rows), limit, offset)

    def _flush_events(self, env: Environment) -> None:
        if not env.pending_events:
            return
        seq = max((row[0] for _, row in self._tx.rows("environment_events") if row[1].environment_id == env.id), default=0)
        for event in env.pending_events:
            seq += 1
            self._tx.insert("environment_events", event.id, (seq, stored_copy(event)))
        env.pending_events.clear()


class InMemoryAllocationRepository(_Repository):
    async def add_gpus(self, allocations: list[GpuAllocation]) -> None:
        for a in allocations:
            self._tx.insert("gpu_allocations", (a.environment_id, a.gpu_uuid), a)

    async def add_ports(self, ports: list[HostPort]) -> None:
        for p in ports:
            self._tx.insert("host_ports", (p.environment_id, p.host_id, p.port), p)

    async def gpus(self) -> list[GpuAllocation]:
        return self._find("gpu_allocations", lambda a: True)  # unordered, as in SQL

    async def gpus_of(self, env_id: str) -> list[GpuAllocation]:
        return sorted(self._find("gpu_allocations", lambda a: a.environment_id == env_id), key=lambda a: a.gpu_uuid)

    async def ports_of(self, env_id: str) -> list[HostPort]:
        return sorted(self._find("host_ports", lambda p: p.environment_id == env_id), key=lambda p: (p.host_id, p.port))

    async def ports_on_host(self, host_id: str) -> set[int]:
        return {p.port for _, p in self._tx.rows("host_ports") if p.host_id == host_id}

    async def release_gpus(self, env_id: str) -> None:
        self._delete_of("gpu_allocations", env_id)

    async def release_ports(self, env_id: str) -> None:
        self._delete_of("host_ports", env_id)

    async def release(self, env_id: str) -> None:
        for table in ("gpu_allocations", "host_ports"):
            self._delete_of(table, env_id)

    def _delete_of(self, table: str, env_id: str) -> None:
        for key, row in list(self._tx.rows(table)):
            if row.environment_id == env_id:
                self._tx.delete(table, key)
