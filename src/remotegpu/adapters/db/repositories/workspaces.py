"""SQL repository of the workspaces context."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from remotegpu.adapters.db.repositories._base import SqlRepository
from remotegpu.adapters.db.tables import (
    change_epoch,
    environments,
    gpu_allocations,
    user_quotas,
    workspace_invitations,
    workspace_members,
    workspace_quotas,
    workspaces,
)
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.workspaces.models import Invitation, InvitationStatus, Membership, Role, Workspace
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota

_QUOTA_COLUMNS = tuple(c.name for c in workspace_quotas.c if c.name != "workspace_id")
_HOLDING = [s.value for s in EnvStatus if s.holds_resources]


#: A workspace and one user's membership of it (NULLs when not a member): every
#: authorization reads it, so it is built once and only executed.
#: Where get_with_member leaves the change epoch it read with the membership, for the
#: unit of work's next ``environments.change_epoch()`` (one round trip fewer per cached read).
EPOCH_SEEN = "remotegpu.change_epoch_seen"

_WITH_MEMBER = (
    select(workspaces, workspace_members.c.user_id, workspace_members.c.role,
           workspace_members.c.created_at.label("member_since"),
           select(change_epoch.c.epoch).where(change_epoch.c.id == 1).scalar_subquery().label("_epoch"))
    .select_from(workspaces.outerjoin(workspace_members, and_(
        workspace_members.c.workspace_id == workspaces.c.id, workspace_members.c.user_id == bindparam("user_id"),
    )))
    .where(workspaces.c.id == bindparam("workspace_id"))
)


def _workspace(row: Any) -> Workspace:
    m = row._mapping
    return Workspace(
        id=m["id"], name=m["name"], slug=m["slug"], is_personal=m["is_personal"],
        created_by=m["created_by"], created_at=m["created_at"],
    )


def _membership(row: Any) -> Membership:
    m = row._mapping
    return Membership(workspace_id=m["workspace_id"], user_id=m["user_id"], role=Role(m["role"]), created_at=m["created_at"])


def _membership_values(membership: Membership) -> dict[str, Any]:
    return {
        "workspace_id": membership.workspace_id, "user_id": membership.user_id,
        "role": membership.role.value, "created_at": membership.created_at,
    }


def _invitation(row: Any) -> Invitation:
    m = row._mapping
    return Invitation(
        id=m["id"], workspace_id=m["workspace_id"], user_id=m["user_id"], role=Role(m["role"]),
        invited_by=m["invited_by"], created_at=m["created_at"], expires_at=m["expires_at"],
        status=InvitationStatus(m["status"]), responded_at=m["responded_at"],
    )


def _usage_statement(in_scope):
    """What the environments matching ``in_scope`` hold now, in one aggregate query.

    gpus: live GPU allocations of those environments; environments: those not
    deleted; cpu_cores / memory_gib: summed over environments whose status holds
    resources (starting, running, lost); storage_gib: disk_gib summed over those not
    deleted (a stopped environment keeps its disk).
    """
    holding = environments.c.status.in_(_HOLDING)
    has_disk = environments.c.status != EnvStatus.DELETED.value
    gpus = (
        select(func.count())
        .select_from(gpu_allocations.join(environments, environments.c.id == gpu_allocations.c.environment_id))
        .where(in_scope)
        .scalar_subquery()
    )
    return select(
        gpus,
        func.count(case((has_disk, 1))),
        func.coalesce(func.sum(case((holding, environments.c.cpu_cores), else_=0)), 0),
        func.coalesce(func.sum(case((holding, environments.c.memory_gib), else_=0)), 0),
        func.coalesce(func.sum(case((has_disk, environments.c.disk_gib), else_=0)), 0),
    ).where(in_scope)


# Built once (quota reads and every placement's quota check run them), executed with bound values.
_WORKSPACE_USAGE = _usage_statement(environments.c.workspace_id == bindparam("workspace_id"))
_OWNED_USAGE = _usage_statement(environments.c.workspace_id.in_(
    select(workspace_members.c.workspace_id).where(
        workspace_members.c.user_id == bindparam("owner_id"), workspace_members.c.role == Role.OWNER.value
    )
))


class SqlWorkspaceRepository(SqlRepository):
    async def add(self, workspace: Workspace) -> None:
        await self._execute(insert(workspaces).values(asdict(workspace)))

    async def get(self, workspace_id: str) -> Workspace | None:
        row = (await self._session.execute(select(workspaces).where(workspaces.c.id == workspace_id))).first()
        return _workspace(row) if row else None

    async def get_with_member(self, workspace_id: str, user_id: str) -> tuple[Workspace, Membership | None] | None:
        row = (await self._session.execute(_WITH_MEMBER, {"workspace_id": workspace_id, "user_id": user_id})).first()
        if row is None:
            return None
        self._session.info[EPOCH_SEEN] = row._epoch
        member = None if row.user_id is None else Membership(workspace_id, row.user_id, Role(row.role), row.member_since)
        return _workspace(row), member

    async def update(self, workspace: Workspace) -> None:
        values = {k: v for k, v in asdict(workspace).items() if k != "id"}
        await self._execute(update(workspaces).where(workspaces.c.id == workspace.id).values(values))

    async def delete(self, workspace_id: str) -> None:
        # Memberships and quota go with it through ON DELETE CASCADE.
        await self._execute(delete(workspaces).where(workspaces.c.id == workspace_id))

    async def slug_taken(self, slug: str) -> bool:
        return bool((await self._session.execute(select(exists().where(workspaces.c.slug == slug)))).scalar())

    async def list_for_user(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[tuple[Workspace, Membership]], int]:
        query = (
            select(
                workspaces,
                workspace_members.c.workspace_id, workspace_members.c.user_id,
                workspace_members.c.role, workspace_members.c.created_at.label("member_since"),
            )
            .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
            .where(workspace_members.c.user_id == user_id)
            .order_by(workspaces.c.created_at, workspaces.c.id)
        )
        rows, total = await self._page_with_total(query, limit=limit, offset=offset)
        items = [
            (_workspace(r), Membership(r.workspace_id, r.user_id, Role(r.role), r.member_since))
            for r in rows
        ]
        return items, total

    async def list_all(self, *, search: str | None = None, limit: int, offset: int) -> tuple[list[Workspace], int]:
        query = select(workspaces).order_by(workspaces.c.created_at, workspaces.c.id)
        if search:
            # lower() LIKE instead of ILIKE: the same on SQLite and PostgreSQL.
            term = search.lower()
            query = query.where(
                or_(*(func.lower(c).contains(term, autoescape=True) for c in (workspaces.c.name, workspaces.c.slug)))
            )
        rows, total = await self._page(query, limit=limit, offset=offset)
        return [_workspace(r) for r in rows], total

    # --- members ----------------------------------------------------------------------
    async def add_member(self, membership: Membership) -> None:
        await self._execute(insert(workspace_members).values(_membership_values(membership)))

    async def get_member(self, workspace_id: str, user_id: str) -> Membership | None:
        query = select(workspace_members).where(
            workspace_members.c.workspace_id == workspace_id, workspace_members.c.user_id == user_id
        )
        row = (await self._session.execute(query)).first()
        return _membership(row) if row else None

    async def update_member(self, membership: Membership) -> None:
        query = update(workspace_members).where(
            workspace_members.c.workspace_id == membership.workspace_id,
            workspace_members.c.user_id == membership.user_id,
        )
        await self._execute(query.values(role=membership.role.value))

    async def remove_member(self, workspace_id: str, user_id: str) -> None:
        await self._execute(
            delete(workspace_members).where(
                workspace_members.c.workspace_id == workspace_id, workspace_members.c.user_id == user_id
            )
        )

    async def list_members(self, workspace_id: str) -> list[Membership]:
        query = (
            select(workspace_members)
            .where(workspace_members.c.workspace_id == workspace_id)
            .order_by(workspace_members.c.created_at, workspace_members.c.user_id)
        )
        return [_membership(r) for r in await self._session.execute(query)]

    def _owned_by(self, user_id: str):
        """Ids of the workspaces in which ``user_id`` holds the owner role (a subquery)."""
        return select(workspace_members.c.workspace_id).where(
            workspace_members.c.user_id == user_id, workspace_members.c.role == Role.OWNER.value
        )

    async def list_owners(self, workspace_id: str) -> list[str]:
        query = select(workspace_members.c.user_id).where(
            workspace_members.c.workspace_id == workspace_id, workspace_members.c.role == Role.OWNER.value
        ).order_by(workspace_members.c.user_id)
        return list((await self._session.execute(query)).scalars())

    async def count_owned(self, user_id: str) -> int:
        query = select(func.count()).select_from(workspaces).where(
            workspaces.c.id.in_(self._owned_by(user_id)), workspaces.c.is_personal.is_(False)
        )
        return int((await self._session.execute(query)).scalar_one())

    # --- quota --------------------------------------------------------------------------
    async def get_quota(self, workspace_id: str) -> Quota | None:
        row = (await self._session.execute(select(workspace_quotas).where(workspace_quotas.c.workspace_id == workspace_id))).first()
        if row is None:
            return None
        return Quota(**{name: row._mapping[name] for name in _QUOTA_COLUMNS})

    async def set_quota(self, workspace_id: str, quota: Quota) -> None:
        values = {name: getattr(quota, name) for name in _QUOTA_COLUMNS}
        await self._upsert(workspace_quotas, "workspace_id", workspace_id, values)

    async def clear_quota(self, workspace_id: str) -> None:
        await self._execute(delete(workspace_quotas).where(workspace_quotas.c.workspace_id == workspace_id))

    async def get_user_quota(self, user_id: str) -> UserQuota | None:
        row = (await self._session.execute(select(user_quotas).where(user_quotas.c.user_id == user_id))).first()
        if row is None:
            return None
        m = row._mapping
        return UserQuota(Quota(**{name: m[name] for name in _QUOTA_COLUMNS}), max_workspaces=m["max_workspaces"])

    async def set_user_quota(self, user_id: str, quota: UserQuota) -> None:
        values = {name: getattr(quota.resources, name) for name in _QUOTA_COLUMNS}
        await self._upsert(user_quotas, "user_id", user_id, {**values, "max_workspaces": quota.max_workspaces})

    async def clear_user_quota(self, user_id: str) -> None:
        await self._execute(delete(user_quotas).where(user_quotas.c.user_id == user_id))

    async def _upsert(self, table, key: str, key_value: str, values: dict[str, Any]) -> None:
        # Both dialects speak INSERT ... ON CONFLICT DO UPDATE.
        dialect = postgresql if self._session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values({key: key_value, **values})
        await self._execute(statement.on_conflict_do_update(index_elements=[key], set_=values))

    async def usage(self, workspace_id: str) -> Usage:
        return await self._usage(_WORKSPACE_USAGE, {"workspace_id": workspace_id})

    async def owned_usage(self, user_id: str) -> Usage:
        return await self._usage(_OWNED_USAGE, {"owner_id": user_id})

    async def _usage(self, query, params: dict[str, str]) -> Usage:
        n_gpus, n_envs, cpu, memory, disk = (await self._session.execute(query, params)).one()
        return Usage(
            gpus=int(n_gpus), environments=int(n_envs), cpu_cores=int(cpu), memory_gib=int(memory), storage_gib=int(disk)
        )

    # --- invitations --------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        values = asdict(invitation)
        values.update(role=invitation.role.value, status=invitation.status.value)
        await self._execute(insert(workspace_invitations).values(values))

    async def get_invitation(self, invitation_id: str) -> Invitation | None:
        query = select(workspace_invitations).where(workspace_invitations.c.id == invitation_id)
        row = (await self._session.execute(query)).first()
        return _invitation(row) if row else None

    async def list_open_invitations(
        self, *, now: datetime, workspace_id: str | None = None, user_id: str | None = None
    ) -> list[Invitation]:
        t = workspace_invitations.c
        query = select(workspace_invitations).where(t.status == InvitationStatus.PENDING.value, t.expires_at > now)
        if workspace_id is not None:
            query = query.where(t.workspace_id == workspace_id)
        if user_id is not None:
            query = query.where(t.user_id == user_id)
        return [_invitation(r) for r in await self._session.execute(query.order_by(t.created_at, t.id))]

    async def close_invitation(self, invitation_id: str, status: InvitationStatus, at: datetime) -> bool:
        t = workspace_invitations.c
        statement = (
            update(workspace_invitations)
            .where(t.id == invitation_id, t.status == InvitationStatus.PENDING.value)
            .values(status=status.value, responded_at=at)
        )
        result = await self._session.execute(statement)
        return result.rowcount == 1
