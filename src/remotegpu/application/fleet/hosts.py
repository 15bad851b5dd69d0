"""Host administration: add (join token), list, cordon/uncordon/drain, rotate or revoke
the agent's token, remove."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from remotegpu.application.identity import audit
from remotegpu.application.identity.admin import require_admin
from remotegpu.application.identity.secrets import hash_secret, new_secret
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.domain.environments.models import Desired, EnvStatus
from remotegpu.domain.fleet.addresses import check_address
from remotegpu.domain.fleet.models import Host, HostCondition, HostStatus
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
    conditions: list[HostCondition] = field(default_factory=list)


@dataclass
class HostService:
    uow: UnitOfWorkFactory
    clock: Clock
    environments: "EnvironmentService"

    async def add(
        self, actor: User | None, name: str, *, address: str = "", labels: dict[str, str] | None = None,
        allow_loopback: bool = False,
    ) -> tuple[Host, str]:
        """Create a host record and its one-time join token.

        ``actor`` None: the embedded agent's own host, on this machine, which may report
        loopback addresses. An admin allows that for another host with ``allow_loopback``
        (an agent run on the server's machine); otherwise its agent's loopback, link-local
        or malformed addresses are refused."""
        if actor is not None:
            require_admin(actor)
        else:
            allow_loopback = True
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise InvalidInput("host name must be 1-64 characters", details={"field": "name"})
        address = check_address(address.strip(), field="address", allow_loopback=allow_loopback)
        token = new_secret(JOIN_TOKEN_PREFIX)
        host = Host(
            id=new_id(), name=name, status=HostStatus.OFFLINE, labels=dict(labels or {}), address=address,
            created_at=self.clock.now(), join_token_hash=hash_secret(token), allow_loopback=allow_loopback,
        )
        async with self.uow() as uow:
            if await uow.hosts.get_by_name(name):
                raise Conflict("a host with that name exists", code="host_exists", details={"field": "name"})
            await uow.hosts.add(host)
            await audit.record(uow, self.clock, "admin.host.added", actor_id=actor.id if actor else None, target_type="host",
                               target_id=host.id, name=name, allow_loopback=allow_loopback)
            await uow.commit()
        return host, token

    async def list(self, actor: User) -> list[HostWithUsage]:
        require_admin(actor)
        async with self.uow() as uow:
            hosts = await uow.hosts.list()
            names = {h.id: h.name for h in hosts}
            allocated = {a.gpu_uuid for a in await uow.allocations.gpus()}
            return [
                HostWithUsage(h, {g.uuid for g in h.gpus} & allocated, len(await uow.environments.list_for_host(h.id)),
                              h.conditions(names))
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
            # capacity back (uncordon): the queue moves as this commits (QueueingUnitOfWork)
            await audit.record(uow, self.clock, f"admin.host.{status.value}", actor_id=actor.id, target_type="host", target_id=host.id)
            await uow.commit()
        return host

    async def set_overcommit(self, actor: User, host_id: str, *, cpu: float | None, memory: float | None) -> Host:
        """Set the CPU / memory overcommit ratios (None keeps one). Raising one frees
        capacity: the queue moves as this commits; lowering one never evicts anything."""
        require_admin(actor)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            host = await self._host(uow, host_id)
            before = (host.cpu_overcommit, host.memory_overcommit)
            host.set_overcommit(cpu, memory)
            await uow.hosts.update(host)
            await audit.record(uow, self.clock, "admin.host.overcommit_set", actor_id=actor.id, target_type="host", target_id=host_id,
                               cpu_overcommit=host.cpu_overcommit, memory_overcommit=host.memory_overcommit,
                               previous=list(before))
            await uow.commit()
        return host

    async def rotate_token(self, actor: User, host_id: str) -> str:
        """A new one-time join token for the host; its agent's current token (and any
        unused join token) stops working at once. The agent re-registers with it
        (``remotegpu agent --token NEW``) and keeps its host identity: same host, same
        environments. Answered once: only its hash is stored."""
        require_admin(actor)
        token = new_secret(JOIN_TOKEN_PREFIX)
        async with self.uow() as uow:
            host = await self._host(uow, host_id)
            host.join_token_hash, host.agent_token_hash = hash_secret(token), None
            await uow.hosts.update(host)
            await audit.record(uow, self.clock, "admin.host.token_rotated", actor_id=actor.id, target_type="host", target_id=host_id)
            await uow.commit()
        return token

    async def revoke_token(self, actor: User, host_id: str) -> None:
        """The host's agent (and any unused join token) is refused from now on; the host
        goes offline after its missed heartbeats, like a dead one. Rotate to let it back."""
        require_admin(actor)
        async with self.uow() as uow:
            host = await self._host(uow, host_id)
            host.join_token_hash = host.agent_token_hash = None
            await uow.hosts.update(host)
            await audit.record(uow, self.clock, "admin.host.token_revoked", actor_id=actor.id, target_type="host", target_id=host_id)
            await uow.commit()

    async def remove(self, actor: User, host_id: str, *, force: bool = False) -> list[str]:
        """Remove a host: its record, GPUs and agent token go at once.

        Refused (``host_not_empty``) while the host is online and has environments,
        unless ``force``. Its environments are not deleted behind their owners' backs:
        they turn ``lost`` (the disk went with the host) and their GPUs and ports are
        freed; a delete then completes at once, which releases their storage quota.
        One being deleted is deleted now. Returns the ids of the lost environments."""
        require_admin(actor)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            host = await self._host(uow, host_id)
            envs = await uow.environments.list_for_host(host_id)
            if envs and host.status is not HostStatus.OFFLINE and not force:
                raise Conflict(
                    f"host {host.name} is online and still has {len(envs)} environments: delete or move them first, "
                    "or remove it with force (they turn lost)",
                    code="host_not_empty", details={"environments": len(envs)},
                )
            now, lost = self.clock.now(), []
            for env in envs:
                await uow.allocations.release(env.id)
                if env.status is EnvStatus.DELETING:
                    env.transition(EnvStatus.DELETED, f"host {host.name} was removed: nothing is left to delete", now)
                else:
                    env.desired = Desired.STOPPED  # never to run again: there is no host to run it
                    env.transition(EnvStatus.LOST, f"host {host.name} was removed by an admin, and its disk with it: delete this environment", now)
                    lost.append(env.id)
                await uow.environments.update(env)
            await uow.hosts.delete(host_id)  # its GPUs and its agent token with it
            await audit.record(uow, self.clock, "admin.host.removed", actor_id=actor.id, target_type="host", target_id=host_id,
                               name=host.name, force=force, lost_environments=len(lost))
            await uow.commit()
        return lost

    @staticmethod
    async def _host(uow, host_id: str) -> Host:
        host = await uow.hosts.get(host_id)
        if host is None:
            raise NotFound("host not found")
        return host
