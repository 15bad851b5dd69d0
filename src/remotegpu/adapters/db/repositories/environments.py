"""SQL repositories of the environments context: environments, their event log, and
the GPUs and host ports live environments hold."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from remotegpu.adapters.db.repositories._base import SqlRepository, conflict_from
from remotegpu.adapters.db.repositories.workspaces import EPOCH_SEEN
from remotegpu.adapters.db.tables import (
    change_epoch,
    environment_events,
    environments,
    gpu_allocations,
    host_gpus,
    host_ports,
    hosts,
    workspace_members,
)
from remotegpu.application.environments.ports import EnvironmentListing
from remotegpu.domain.environments.models import (
    Desired,
    Environment,
    EnvironmentEvent,
    EnvStatus,
    GpuAllocation,
    HostPort,
)
from remotegpu.domain.fleet.models import Gpu

#: Columns that are Environment's fields (``autostop_due_at`` is derived from them: written, never read back).
_ENV_COLUMNS = tuple(c.name for c in environments.c if c.name != "autostop_due_at")


def _env_values(env: Environment) -> dict[str, Any]:
    values = {name: getattr(env, name) for name in _ENV_COLUMNS}
    values["autostop_due_at"] = env.autostop_due_at
    values["status"] = env.status.value
    values["desired"] = env.desired.value
    values["env"] = dict(env.env)
    values["secret_env"] = dict(env.secret_env)
    values["last_gpu_uuids"] = list(env.last_gpu_uuids)
    values["data_mounts"] = [dict(m) for m in env.data_mounts]
    return values


def _env(row: Any) -> Environment:
    m = dict(row._mapping)
    m.pop("autostop_due_at", None)
    m["status"] = EnvStatus(m["status"])
    m["desired"] = Desired(m["desired"])
    m["env"] = dict(m["env"])
    m["secret_env"] = dict(m["secret_env"] or {})
    m["last_gpu_uuids"] = list(m["last_gpu_uuids"] or [])
    m["data_mounts"] = [dict(x) for x in m.get("data_mounts") or []]
    return Environment(**m)


def _env_of(m: Any) -> Environment:
    """An environment from a row that may carry more columns than the table's."""
    values = {name: m[name] for name in _ENV_COLUMNS}
    values["status"] = EnvStatus(values["status"])
    values["desired"] = Desired(values["desired"])
    values["env"] = dict(values["env"])
    return Environment(**values)


_GPU_FIELDS = ("index", "uuid", "model", "memory_mib", "numa_node", "nvlink_group", "healthy")

#: Every queued environment's place in the queue, in the order the queue serves them
#: (``list_by_status``: queued_at, then created_at, then id). A few hundred rows at most,
#: read through the status index.
_QUEUE = (
    select(
        environments.c.id,
        func.row_number().over(
            order_by=(environments.c.queued_at.asc().nulls_last(), environments.c.created_at, environments.c.id)
        ).label("position"),
    )
    .where(environments.c.status == EnvStatus.QUEUED.value)
    .subquery("queue")
)


_HELD_RESOURCES = (
    select(environments.c.id, environments.c.host_id, environments.c.cpu_cores, environments.c.memory_gib)
    .where(environments.c.status.in_([s.value for s in EnvStatus if s.holds_resources]),
           environments.c.host_id.is_not(None))
    .order_by(environments.c.queued_at.asc().nulls_last(), environments.c.created_at, environments.c.id)
)
_EPOCH = select(change_epoch.c.epoch).where(change_epoch.c.id == 1)

_FILTERS = ("workspace_id", "member_id", "env_id")


@lru_cache(maxsize=None)
def _listing_statements(shape: tuple[str, ...]) -> tuple[Select, Select]:
    """(page, count) statements of ``listings`` for one combination of filters, built
    once: values come as bound parameters, so a request only executes them."""
    e = environments.c
    where = [e.status != EnvStatus.DELETED.value]
    if "workspace_id" in shape:
        where.append(e.workspace_id == bindparam("workspace_id"))
    if "member_id" in shape:
        where.append(e.workspace_id.in_(
            select(workspace_members.c.workspace_id).where(workspace_members.c.user_id == bindparam("member_id"))
        ))
    if "env_id" in shape:
        where.append(e.id == bindparam("env_id"))
    if "statuses" in shape:
        where.append(e.status.in_(bindparam("statuses", expanding=True)))
    page = (
        select(
            environments, hosts.c.name.label("_host_name"), _QUEUE.c.position.label("_position"),
            func.count().over().label("_total"),
        )
        .select_from(environments.outerjoin(hosts, hosts.c.id == e.host_id).outerjoin(_QUEUE, _QUEUE.c.id == e.id))
        .where(*where)
        .order_by(e.created_at.desc(), e.id.desc())
        .limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer))
    )
    return page, select(func.count()).select_from(environments).where(*where)


#: The GPUs a page's placed environments hold (on the host the environment is on), by index.
_HELD_GPUS = (
    select(gpu_allocations.c.environment_id, host_gpus)
    .join(host_gpus, host_gpus.c.uuid == gpu_allocations.c.gpu_uuid)
    .join(environments, and_(environments.c.id == gpu_allocations.c.environment_id,
                             environments.c.host_id == host_gpus.c.host_id))
    .where(gpu_allocations.c.environment_id.in_(bindparam("ids", expanding=True)))
    .order_by(host_gpus.c.index)
)
_HELD_PORTS = (
    select(host_ports).where(host_ports.c.environment_id.in_(bindparam("ids", expanding=True)))
    .order_by(host_ports.c.host_id, host_ports.c.port)
)


def _event(row: Any) -> EnvironmentEvent:
    m = row._mapping
    return EnvironmentEvent(
        id=m["id"], environment_id=m["environment_id"], at=m["at"],
        from_status=EnvStatus(m["from_status"]) if m["from_status"] is not None else None,
        to_status=EnvStatus(m["to_status"]), reason=m["reason"],
    )


async def insert_rows(repository: SqlRepository, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` as one executemany of a cached statement (a multi-VALUES insert
    is compiled afresh for every row count: ~2 ms, on the placement hot path)."""
    if not rows:
        return
    try:
        await repository._session.execute(insert(table), rows)
    except IntegrityError as exc:
        raise conflict_from(exc) from exc


class SqlEnvironmentRepository(SqlRepository):
    async def add(self, env: Environment) -> None:
        await self._execute(insert(environments).values(_env_values(env)))
        await self._flush_events(env)

    async def get(self, env_id: str) -> Environment | None:
        row = (await self._session.execute(select(environments).where(environments.c.id == env_id))).first()
        return _env(row) if row else None

    async def change_epoch(self) -> int | None:
        """Moved by migration 0023's triggers in the same transaction as every change.

        The value the membership check of this unit of work read with it, when there is
        one (authorize comes first on most hot reads): read before anything the caller
        computes next, it is as good as a fresh one, and costs no round trip."""
        seen = self._session.info.pop(EPOCH_SEEN, None)
        if seen is not None:
            return seen
        return (await self._session.execute(_EPOCH)).scalar()

    async def update(self, env: Environment) -> None:
        values = {k: v for k, v in _env_values(env).items() if k != "id"}
        result = await self._execute(update(environments).where(environments.c.id == env.id).values(values))
        if result.rowcount:
            await self._flush_events(env)

    async def list(
        self, *, workspace_ids: list[str] | None, statuses: list[EnvStatus] | None, include_deleted: bool,
        limit: int, offset: int,
    ) -> tuple[list[Environment], int]:
        query = select(environments).order_by(environments.c.created_at.desc(), environments.c.id.desc())
        if workspace_ids is not None:
            query = query.where(environments.c.workspace_id.in_(workspace_ids))
        if statuses is not None:
            query = query.where(environments.c.status.in_([s.value for s in statuses]))
        if not include_deleted:
            query = query.where(environments.c.status != EnvStatus.DELETED.value)
        rows, total = await self._page(query, limit=limit, offset=offset)
        return [_env(r) for r in rows], total

    async def list_for_host(self, host_id: str) -> list[Environment]:
        query = (
            select(environments)
            .where(environments.c.host_id == host_id, environments.c.status != EnvStatus.DELETED.value)
            .order_by(environments.c.created_at, environments.c.id)
        )
        return [_env(r) for r in await self._session.execute(query)]

    async def list_by_status(self, statuses: list[EnvStatus]) -> list[Environment]:
        query = (
            select(environments)
            .where(environments.c.status.in_([s.value for s in statuses]))
            .order_by(environments.c.queued_at.asc().nulls_last(), environments.c.created_at, environments.c.id)
        )
        return [_env(r) for r in await self._session.execute(query)]

    async def list_autostop_due(self, now: datetime) -> list[Environment]:
        query = (
            select(environments)
            .where(environments.c.autostop_due_at <= now, environments.c.status == EnvStatus.RUNNING.value)
            .order_by(environments.c.autostop_due_at, environments.c.id)
        )
        return [_env(r) for r in await self._session.execute(query)]

    async def held_resources(self) -> list[tuple[str, str, int, int]]:
        return [tuple(r) for r in (await self._session.execute(_HELD_RESOURCES)).tuples()]

    async def events(self, env_id: str, *, limit: int, offset: int) -> tuple[list[EnvironmentEvent], int]:
        query = (
            select(environment_events)
            .where(environment_events.c.environment_id == env_id)
            .order_by(environment_events.c.at, environment_events.c.seq)
        )
        rows, total = await self._page_with_total(query, limit=limit, offset=offset)
        return [_event(r) for r in rows], total

    async def listings(
        self, *, workspace_id: str | None = None, member_id: str | None = None, env_id: str | None = None,
        statuses: list[EnvStatus] | None = None, limit: int, offset: int,
    ) -> tuple[list[EnvironmentListing], int]:
        """At most four queries whatever the page's length: the page (with its total, host
        names and queue positions), its GPUs, its ports, and a count only for a page past
        the end. The hot read of the console and the API: keep it that way."""
        params = {"workspace_id": workspace_id, "member_id": member_id, "env_id": env_id, "limit": limit, "offset": offset}
        shape = tuple(name for name in _FILTERS if params[name] is not None) + (("statuses",) if statuses is not None else ())
        if statuses is not None:
            params["statuses"] = [s.value for s in statuses]
        page, count = _listing_statements(shape)
        rows = (await self._session.execute(page, params)).all()
        if rows:
            total = rows[0]._mapping["_total"]
        elif offset == 0:
            total = 0
        else:  # past the end: no row carries the total
            total = (await self._session.execute(count, params)).scalar_one()
        envs = [(_env_of(r._mapping), r._mapping["_host_name"], r._mapping["_position"]) for r in rows]
        placed = [env.id for env, _, _ in envs if env.host_id is not None]  # only placed ones hold anything
        gpus: dict[str, list[Gpu]] = {}
        ports: dict[str, list[HostPort]] = {}
        if placed:
            for r in await self._session.execute(_HELD_GPUS, {"ids": placed}):
                m = r._mapping
                gpus.setdefault(m["environment_id"], []).append(Gpu(**{n: m[n] for n in _GPU_FIELDS}))
            for r in await self._session.execute(_HELD_PORTS, {"ids": placed}):
                ports.setdefault(r.environment_id, []).append(HostPort(r.host_id, r.port, r.purpose, r.environment_id))
        listings = [
            EnvironmentListing(env, position if env.status is EnvStatus.QUEUED else None, host_name,
                               gpus.get(env.id, []), ports.get(env.id, []))
            for env, host_name, position in envs
        ]
        return listings, total

    async def _flush_events(self, env: Environment) -> None:
        """Append ``pending_events`` to the log, numbered after the last one, and clear them."""
        if not env.pending_events:
            return
        last = (
            await self._session.execute(
                select(func.max(environment_events.c.seq)).where(environment_events.c.environment_id == env.id)
            )
        ).scalar()
        rows = [
            {
                "id": e.id, "environment_id": e.environment_id, "seq": (last or 0) + n, "at": e.at,
                "from_status": e.from_status.value if e.from_status is not None else None,
                "to_status": e.to_status.value, "reason": e.reason,
            }
            for n, e in enumerate(env.pending_events, start=1)
        ]
        await insert_rows(self, environment_events, rows)
        env.pending_events.clear()


class SqlAllocationRepository(SqlRepository):
    """Unique constraints refuse a GPU or a host port held twice: ``Conflict`` at once,
    or from ``commit`` when another transaction got there first."""

    async def add_gpus(self, allocations: list[GpuAllocation]) -> None:
        rows = [{"environment_id": a.environment_id, "host_id": a.host_id, "gpu_uuid": a.gpu_uuid} for a in allocations]
        await insert_rows(self, gpu_allocations, rows)

    async def add_ports(self, ports: list[HostPort]) -> None:
        rows = [
            {"environment_id": p.environment_id, "host_id": p.host_id, "port": p.port, "purpose": p.purpose} for p in ports
        ]
        await insert_rows(self, host_ports, rows)

    async def gpus(self) -> list[GpuAllocation]:
        # Unordered: read under the scheduling lock on every placement, so kept lean.
        query = select(gpu_allocations.c.environment_id, gpu_allocations.c.host_id, gpu_allocations.c.gpu_uuid)
        return [GpuAllocation(*r) for r in (await self._session.execute(query)).tuples()]

    async def gpus_of(self, env_id: str) -> list[GpuAllocation]:
        query = select(gpu_allocations).where(gpu_allocations.c.environment_id == env_id).order_by(gpu_allocations.c.gpu_uuid)
        return [GpuAllocation(r.environment_id, r.host_id, r.gpu_uuid) for r in await self._session.execute(query)]

    async def ports_of(self, env_id: str) -> list[HostPort]:
        query = select(host_ports).where(host_ports.c.environment_id == env_id).order_by(host_ports.c.host_id, host_ports.c.port)
        return [HostPort(r.host_id, r.port, r.purpose, r.environment_id) for r in await self._session.execute(query)]

    async def ports_on_host(self, host_id: str) -> set[int]:
        query = select(host_ports.c.port).where(host_ports.c.host_id == host_id)
        return set((await self._session.execute(query)).scalars())

    async def release_gpus(self, env_id: str) -> None:
        await self._execute(delete(gpu_allocations).where(gpu_allocations.c.environment_id == env_id))

    async def release_ports(self, env_id: str) -> None:
        await self._execute(delete(host_ports).where(host_ports.c.environment_id == env_id))

    async def release(self, env_id: str) -> None:
        await self.release_gpus(env_id)
        await self.release_ports(env_id)
