"""Host administration: add (join token), list, cordon/uncordon/drain, remove."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotegpu.application.identity import audit
from remotegpu.application.identity.admin import require_admin
from remotegpu.application.identity.secrets import hash_secret, new_secret
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.models import Host, HostStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound
from remotegpu.domain.shared.ids import new_id

if TYPE_CHECKING:
    from remotegpu.application.environments.service import EnvironmentService

JOIN_TOKEN_PREFIX = "rgj_"


@dataclass(frozen=True)
class HostWithUsage:
    host: Host
    allocated_gpus: set[str]
    environments: int


@dataclass
class HostService:
    uow: UnitOfWorkFactory
    clock: Clock
    environments: "EnvironmentService"

    async def add(self, actor: User | None, name: str, *, address: str = "", labels: dict[str, str] | None = None) -> tuple[Host, str]:
        """Create a host record and its one-time join token (``actor`` None: the embedded agent)."""
        if actor is not None:
            require_admin(actor)
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise InvalidInput("host name must be 1-64 characters", details={"field": "name"})
        token = new_secret(JOIN_TOKEN_PREFIX)
        host = Host(
            id=new_id(), name=name, status=HostStatus.OFFLINE, labels=dict(labels or {}), address=address.strip(),
            created_at=self.clock.now(), join_token_hash=hash_secret(token),
        )
        async with self.uow() as uow:
            if await uow.hosts.get_by_name(name):
                raise Conflict("a host with that name exists", code="host_exists", details={"field": "name"})
            await uow.hosts.add(host)
            await audit.record(uow, self.clock, "admin.host.added", actor_id=actor.id if actor else None, target_type="host", target_id=host.id, name=name)
            await uow.commit()
        return host, token

    async def list(self, actor: User) -> list[HostWithUsage]:
        require_admin(actor)
        async with self.uow() as uow:
            hosts = await uow.hosts.list()
            allocated = {a.gpu_uuid for a in await uow.allocations.gpus()}
            return [
                HostWithUsage(h, {g.uuid for g in h.gpus} & allocated, len(await uow.environments.list_for_host(h.id)))
                for h in hosts
            ]

    async def get(self, actor: User, host_id: str) -> HostWithUsage:
        require_admin(actor)
        for item in await self.list(actor):
            if item.host.id == host_id:
                return item
        raise NotFound("host not found")

    async def set_status(self, actor: User, host_id: str, status: HostStatus) -> Host:
        """cordon: take nothing new; drain: also stop its environments; uncordon: ready again.

        The choice is the host's ``admin_status`` and holds whatever its liveness: an
        offline host stays ``offline`` and takes it on when its agent reports again.
        """
        require_admin(actor)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            host = await uow.hosts.get(host_id)
            if host is None:
                raise NotFound("host not found")
            host.set_admin_status(status)
            await uow.hosts.update(host)
            if status is HostStatus.DRAINING:
                for env in await uow.environments.list_for_host(host_id):
                    if env.status in (EnvStatus.STARTING, EnvStatus.RUNNING, EnvStatus.QUEUED, EnvStatus.LOST):
                        await self.environments.stop_env(uow, env, f"host {host.name} is being drained")
                        await uow.environments.update(env)
            if host.status.accepts_new_work:  # ready and online
                await self.environments.drain_queue(uow)  # capacity is back: queued environments may start
            await audit.record(uow, self.clock, f"admin.host.{status.value}", actor_id=actor.id, target_type="host", target_id=host.id)
            await uow.commit()
        return host

    async def remove(self, actor: User, host_id: str) -> None:
        require_admin(actor)
        async with self.uow() as uow:
            host = await uow.hosts.get(host_id)
            if host is None:
                raise NotFound("host not found")
            live = [e for e in await uow.environments.list_for_host(host_id) if e.status is not EnvStatus.DELETED]
            if live:
                raise Conflict(f"the host still has {len(live)} environments; delete or move them first", code="host_not_empty")
            await uow.hosts.delete(host_id)
            await audit.record(uow, self.clock, "admin.host.removed", actor_id=actor.id, target_type="host", target_id=host_id)
            await uow.commit()
