"""SQL repository of the fleet context: hosts and their GPU inventory."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import and_, delete, func, insert, select, update

from remotegpu.adapters.db.repositories._base import SqlRepository
from remotegpu.adapters.db.repositories.environments import insert_rows
from remotegpu.adapters.db.tables import environments, gpu_allocations, host_gpus, hosts
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.models import ClusterNode, Gpu, Host, HostStatus, QuarantineEntry

# The domain's definitions, as the scheduler's FleetState applies them.
_ACCEPTING = [s.value for s in HostStatus if s.accepts_new_work]
_HOLDING = [s.value for s in EnvStatus if s.holds_resources]
_GPU_FIELDS = ("index", "uuid", "model", "memory_mib", "numa_node", "nvlink_group", "healthy")


_HELD = (
    select(gpu_allocations.c.gpu_uuid, environments.c.host_id)
    .join(environments, environments.c.id == gpu_allocations.c.environment_id)
    .where(environments.c.status.in_(_HOLDING))
    .subquery("held")
)
#: model, healthy GPUs on hosts that accept new work, how many of them live environments
#: hold (on the host they are on, as FleetState counts them), memory_mib. Built once.
_GPU_TYPES = (
    select(host_gpus.c.model, func.count(), func.count(_HELD.c.gpu_uuid), func.max(host_gpus.c.memory_mib))
    .select_from(
        host_gpus.join(hosts, hosts.c.id == host_gpus.c.host_id)
        .outerjoin(_HELD, and_(_HELD.c.gpu_uuid == host_gpus.c.uuid, _HELD.c.host_id == host_gpus.c.host_id))
    )
    .where(host_gpus.c.healthy.is_(True), hosts.c.status.in_(_ACCEPTING))
    .group_by(host_gpus.c.model)
)


def _host_values(host: Host) -> dict[str, Any]:
    return {
        "id": host.id, "name": host.name, "status": host.status.value, "admin_status": host.admin_status.value, "labels": dict(host.labels),
        "cpu_cores": host.cpu_cores, "memory_gib": host.memory_gib, "disk_gib": host.disk_gib,
        "address": host.address, "private_address": host.private_address,
        "last_heartbeat_at": host.last_heartbeat_at, "created_at": host.created_at,
        "join_token_hash": host.join_token_hash, "agent_token_hash": host.agent_token_hash,
        "runtime": host.runtime, "runtime_healthy": host.runtime_healthy, "fake_gpus": host.fake_gpus,
        "gpu_utilization": dict(host.gpu_utilization),
        "port_range_start": host.port_range[0], "port_range_end": host.port_range[1],
        "allow_loopback": host.allow_loopback, "gpu_conflicts": dict(host.gpu_conflicts),
        "quarantined": [{"env_id": q.env_id, "host_id": q.host_id, "since": q.since.isoformat()} for q in host.quarantined],
        "cpu_overcommit": host.cpu_overcommit, "memory_overcommit": host.memory_overcommit,
        "cluster_nodes": [asdict(n) for n in host.cluster_nodes],
    }


def _host(row: Any, gpus: list[Gpu]) -> Host:
    m = row._mapping
    return Host(
        id=m["id"], name=m["name"], status=HostStatus(m["status"]), admin_status=HostStatus(m["admin_status"]),
        labels=dict(m["labels"]),
        cpu_cores=m["cpu_cores"], memory_gib=m["memory_gib"], disk_gib=m["disk_gib"], address=m["address"],
        private_address=m["private_address"],
        last_heartbeat_at=m["last_heartbeat_at"], gpus=gpus, created_at=m["created_at"],
        join_token_hash=m["join_token_hash"], agent_token_hash=m["agent_token_hash"],
        runtime=m["runtime"], runtime_healthy=m["runtime_healthy"], fake_gpus=m["fake_gpus"],
        gpu_utilization={k: int(v) for k, v in m["gpu_utilization"].items()},
        port_range=(m["port_range_start"], m["port_range_end"]),
        allow_loopback=m["allow_loopback"], gpu_conflicts=dict(m["gpu_conflicts"] or {}),
        quarantined=[
            QuarantineEntry(q["env_id"], q.get("host_id", ""), datetime.fromisoformat(q["since"]))
            for q in m["quarantined"] or []
        ],
        cpu_overcommit=float(m["cpu_overcommit"]), memory_overcommit=float(m["memory_overcommit"]),
        cluster_nodes=[ClusterNode(**n) for n in m["cluster_nodes"] or []],
    )


def _gpu(row: Any) -> Gpu:
    m = row._mapping
    return Gpu(**{name: m[name] for name in _GPU_FIELDS})


class SqlHostRepository(SqlRepository):
    """Hosts in ``hosts``, their GPUs in ``host_gpus`` (replaced as a whole by update,
    when they differ from what this unit of work loaded: a heartbeat reporting the same
    inventory writes no GPU row, so it moves no change epoch)."""

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._loaded_gpus: dict[str, list[Gpu]] = {}

    async def add(self, host: Host) -> None:
        await self._execute(insert(hosts).values(_host_values(host)))
        await self._insert_gpus(host)

    async def get(self, host_id: str) -> Host | None:
        return await self._one(hosts.c.id == host_id)

    async def get_by_name(self, name: str) -> Host | None:
        return await self._one(hosts.c.name == name)

    async def get_by_join_token(self, token_hash: str) -> Host | None:
        return await self._one(hosts.c.join_token_hash == token_hash)

    async def get_by_agent_token(self, token_hash: str) -> Host | None:
        return await self._one(hosts.c.agent_token_hash == token_hash)

    async def update(self, host: Host) -> None:
        values = {k: v for k, v in _host_values(host).items() if k != "id"}
        result = await self._execute(update(hosts).where(hosts.c.id == host.id).values(values))
        if result.rowcount == 0:
            return  # like UPDATE ... WHERE id: nothing when the host does not exist
        if _same_inventory(self._loaded_gpus.get(host.id), host.gpus):
            return  # the inventory as it is stored
        self._loaded_gpus.pop(host.id, None)
        # Replace this host's inventory, and only this host's: a UUID another host owns
        # is the caller's to keep out (Host.take_inventory); the UNIQUE(uuid) constraint
        # refuses it otherwise, never another host's row deleted for it.
        await self._execute(delete(host_gpus).where(host_gpus.c.host_id == host.id))
        await self._insert_gpus(host)

    async def gpu_owners(self, uuids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(uuids))
        if not wanted:
            return {}
        rows = await self._session.execute(select(host_gpus.c.uuid, host_gpus.c.host_id).where(host_gpus.c.uuid.in_(wanted)))
        return {row.uuid: row.host_id for row in rows}

    async def list(self) -> list[Host]:
        """Every host with its GPUs (two queries), ordered by name.

        Sorted in Python: a database collation could order names differently."""
        rows = (await self._session.execute(select(hosts))).all()
        gpus: dict[str, list[Gpu]] = defaultdict(list)
        for row in await self._session.execute(select(host_gpus).order_by(host_gpus.c.host_id, host_gpus.c.index)):
            gpus[row.host_id].append(_gpu(row))
        for row in rows:
            self._loaded_gpus[row.id] = list(gpus.get(row.id, []))
        return sorted((_host(r, gpus.get(r.id, [])) for r in rows), key=lambda h: (h.name, h.id))

    async def list_silent_since(self, before: datetime) -> list[Host]:
        rows = (await self._session.execute(select(hosts).where(hosts.c.last_heartbeat_at < before))).all()
        if not rows:
            return []
        gpus: dict[str, list[Gpu]] = defaultdict(list)
        query = select(host_gpus).where(host_gpus.c.host_id.in_([r.id for r in rows])).order_by(host_gpus.c.host_id, host_gpus.c.index)
        for row in await self._session.execute(query):
            gpus[row.host_id].append(_gpu(row))
        for row in rows:
            self._loaded_gpus[row.id] = list(gpus.get(row.id, []))
        return sorted((_host(r, gpus.get(r.id, [])) for r in rows), key=lambda h: (h.name, h.id))

    async def gpu_types(self) -> dict[str, tuple[int, int, int]]:
        """One aggregate query, a row per model: the create form and the API poll it, and
        the fleet snapshot it replaces read every host, GPU and live environment."""
        return {model: (total, total - used, memory) for model, total, used, memory in await self._session.execute(_GPU_TYPES)}

    async def delete(self, host_id: str) -> None:
        await self._execute(delete(hosts).where(hosts.c.id == host_id))  # cascades to host_gpus

    async def _one(self, where: Any) -> Host | None:
        row = (await self._session.execute(select(hosts).where(where))).first()
        if row is None:
            return None
        query = select(host_gpus).where(host_gpus.c.host_id == row.id).order_by(host_gpus.c.index)
        gpus = [_gpu(r) for r in await self._session.execute(query)]
        self._loaded_gpus[row.id] = list(gpus)
        return _host(row, gpus)

    async def _insert_gpus(self, host: Host) -> None:
        await insert_rows(self, host_gpus, _gpu_rows(host.id, host.gpus))


def _same_inventory(loaded: list[Gpu] | None, gpus: list[Gpu]) -> bool:
    if loaded is None or len(loaded) != len(gpus):
        return False
    key = lambda g: (g.index, g.uuid)  # noqa: E731
    return sorted(loaded, key=key) == sorted(gpus, key=key)


def _gpu_rows(host_id: str, gpus: Iterable[Gpu]) -> list[dict[str, Any]]:
    return [{"host_id": host_id, **{name: getattr(gpu, name) for name in _GPU_FIELDS}} for gpu in gpus]
