"""Inference services: use cases (create, list, get, update = rolling, delete, tokens)
and the scaler that turns the autoscaler's count into replicas.

``ServiceScaler.reconcile`` runs about once a second in the server that routes (see
``entrypoints/http/serve.py``), under the scheduling lock:

* replicas of the current generation are added (placed like a 1-GPU-host environment,
  each with a host port on the host's private address) up to the desired count, and
  the surplus (not yet ready ones first) is drained;
* the old generation (after an update) is drained only once as many new replicas are
  ready as desired (at least one): zero failed requests on a rolling update; when the
  fleet has no room for an extra replica, old ones are replaced one at a time (drained
  first; a request finding no ready replica for a moment is held, not failed);
* a draining replica goes once the router has no request in flight to it (from any
  routing process: ``RouterView.drained``); a failed one
  goes at once; either way its GPUs are free in that commit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from remotegpu.application.environments import placement as pl
from remotegpu.application.fleet.agent_protocol import DesiredJobNode, ObservedJobNode
from remotegpu.application.identity.secrets import hash_secret, new_secret
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.workloads.ports import DataMountResolver, JobNodeSpec, RouterView, resolve_mounts
from remotegpu.application.workloads.queue_pass import runs_workloads
from remotegpu.application.workloads.service import DataMountCheck, checked_mounts
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.workspaces.quota import Usage
from remotegpu.domain.environments.images import ImagePolicy
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.identity.models import User
from remotegpu.domain.scheduling import PlacementRequest, place
from remotegpu.domain.shared.errors import Conflict, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workloads.autoscaler import AutoscalePolicy
from remotegpu.domain.workloads.services import (
    POLICY_FIELDS,
    REPLICA_PREFIX,
    InferenceService,
    Replica,
    ServiceStatus,
    validate_service,
)
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)

SERVICE_TOKEN_PREFIX = "rgs_"
#: Replicas' output is not collected (yet): an acknowledged offset no log reaches.
NO_LOGS = 2**62
MUTABLE = ("image", "command", "env", "port", "health_path", "min_replicas", "max_replicas", "target_concurrency",
           "scale_down_delay_s", "scale_to_zero_after_s", "public")
#: Changing one of these starts a new generation (a rolling update).
ROLLING = ("image", "command", "env", "port", "health_path")


def request_of(service: InferenceService) -> PlacementRequest:
    return PlacementRequest(gpu_count=service.gpus, gpu_model=service.gpu_model if service.gpus else None,
                            cpu_cores=service.cpu_cores, memory_gib=service.memory_gib)


async def _visible(uow: UnitOfWork, actor: User, service_id: str) -> tuple[InferenceService, Role | None]:
    service = await uow.inference_services.get(service_id)
    if service is None or service.status is ServiceStatus.DELETED:
        raise NotFound("inference service not found")
    view = await authorize(uow, actor, service.workspace_id, Role.VIEWER)
    return service, view.role


def _may_operate(actor: User, role: Role | None, service: InferenceService) -> bool:
    if actor.is_admin:
        return True
    return role is not None and (role.at_least(Role.ADMIN) or (role.at_least(Role.MEMBER) and service.owner_id == actor.id))


@dataclass
class InferenceServiceService:
    uow: UnitOfWorkFactory
    clock: Clock
    default_image: str = "remotegpu/base:latest"
    images: ImagePolicy | None = None
    data_mounts: DataMountCheck | None = None  # the storage context (None: no mounts)

    async def create(self, actor: User, workspace_id: str, **fields) -> InferenceService:
        mounts = fields.pop("mounts", None) or []
        fields.setdefault("image", None)
        fields["image"] = fields["image"] or self.default_image
        if self.images is not None:
            self.images.check(fields["image"])
        validate_service(**{k: fields[k] for k in (
            "name", "command", "env", "port", "health_path", "gpus", "cpu_cores", "memory_gib", "min_replicas",
            "max_replicas", "target_concurrency", "scale_down_delay_s", "scale_to_zero_after_s")})
        now = self.clock.now()
        policy = AutoscalePolicy(**{k: fields.pop(k) for k in POLICY_FIELDS if k in fields})
        service = InferenceService(id=new_id(), workspace_id=workspace_id, owner_id=actor.id, created_at=now, updated_at=now,
                                   autoscale=policy, **fields)
        service.gpu_model = service.gpu_model if service.gpus else None
        service.desired_replicas = policy.min_replicas
        if mounts:
            async with self.uow() as uow:
                await authorize(uow, actor, workspace_id, Role.MEMBER)
            service.data_mounts = await checked_mounts(self.data_mounts, actor, workspace_id, mounts)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            await authorize(uow, actor, workspace_id, Role.MEMBER)
            await uow.inference_services.add(service)
            await uow.commit()
        return service

    async def get(self, actor: User, service_id: str) -> InferenceService:
        async with self.uow() as uow:
            return (await _visible(uow, actor, service_id))[0]

    async def list(self, actor: User, workspace_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[InferenceService], int]:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
            return await uow.inference_services.list(workspace_ids=[workspace_id], limit=limit, offset=offset)

    async def update(self, actor: User, service_id: str, **changes) -> InferenceService:
        async with self.uow() as uow:
            await uow.lock_scheduling()
            service, role = await _visible(uow, actor, service_id)
            if not _may_operate(actor, role, service):
                raise PermissionDenied("only the service's owner or a workspace admin can do this", code="not_service_owner")
            changes = {k: v for k, v in changes.items() if k in MUTABLE and v is not None}
            if "image" in changes and self.images is not None:
                self.images.check(changes["image"])
            current = {k: getattr(service.autoscale if k in POLICY_FIELDS else service, k) for k in MUTABLE}
            merged = {**current, **changes}
            validate_service(name=service.name, gpus=service.gpus, cpu_cores=service.cpu_cores, memory_gib=service.memory_gib,
                             **{k: merged[k] for k in MUTABLE if k not in ("image", "public")})
            rolling = any(k in changes and changes[k] != current[k] for k in ROLLING)
            for k, v in changes.items():
                if k not in POLICY_FIELDS:
                    setattr(service, k, v)
            service.autoscale = replace(service.autoscale, **{k: v for k, v in changes.items() if k in POLICY_FIELDS})
            if rolling:
                service.generation += 1
                service.status_message = f"rolling update to generation {service.generation}"
            service.updated_at = self.clock.now()
            await uow.inference_services.update(service)
            await uow.commit()
        return service

    async def delete(self, actor: User, service_id: str) -> None:
        async with self.uow() as uow:
            await uow.lock_scheduling()
            service, role = await _visible(uow, actor, service_id)
            if not _may_operate(actor, role, service):
                raise PermissionDenied("only the service's owner or a workspace admin can do this", code="not_service_owner")
            service.status = ServiceStatus.DELETED
            service.replicas = []  # GPUs free in this commit; agents remove the containers
            service.token_hashes = []
            service.updated_at = self.clock.now()
            await uow.inference_services.update(service)
            await uow.commit()

    async def new_token(self, actor: User, service_id: str) -> str:
        """An API token good for this service's URL only (shown once)."""
        token = new_secret(SERVICE_TOKEN_PREFIX)
        async with self.uow() as uow:
            service, role = await _visible(uow, actor, service_id)
            if not _may_operate(actor, role, service):
                raise PermissionDenied("only the service's owner or a workspace admin can do this", code="not_service_owner")
            service.token_hashes = (service.token_hashes + [hash_secret(token)])[-20:]
            await uow.inference_services.update(service)
            await uow.commit()
        return token


def token_matches(service: InferenceService, token: str) -> bool:
    return bool(token) and hash_secret(token) in service.token_hashes


@dataclass
class ServiceScaler:
    """Replicas follow the desired count; see the module docstring."""

    uow: UnitOfWorkFactory
    clock: Clock
    # Called after a commit that changed replicas, with the hosts concerned (their agents
    # are woken at once: AgentService.poke).
    notify: Callable[[set[str]], None] | None = None
    quotas: WorkspacePolicy = field(default_factory=WorkspacePolicy)

    async def reconcile(self, desired: dict[str, int], router: RouterView) -> dict[str, InferenceService]:
        """``desired``: service id → replicas wanted now. Returns the services as saved."""
        out: dict[str, InferenceService] = {}
        touched: set[str] = set()
        saved = False
        async with self.uow() as uow:
            await uow.lock_scheduling()
            services = await uow.inference_services.list_active()
            hosts = {h.id: h for h in await uow.hosts.list() if runs_workloads(h)}
            fleet = None
            before = {s.id: {r.host_id for r in s.replicas} for s in services}
            for service in services:
                changed = False
                want = desired.get(service.id, service.desired_replicas)
                if want != service.desired_replicas:
                    service.desired_replicas, changed = want, True
                # failed replicas go; draining ones once nothing is in flight
                keep = []
                for r in service.replicas:
                    if r.state == "failed" or (r.state == "draining" and router.drained(r.id)):
                        changed = True
                        continue
                    keep.append(r)
                service.replicas = keep
                current = [r for r in service.replicas if r.generation == service.generation and r.state != "draining"]
                if len(current) < want:
                    if fleet is None:
                        fleet = await pl.fleet_snapshot(uow, list(hosts.values()))
                    request = request_of(service)
                    replica_usage = Usage(gpus=service.gpus, cpu_cores=service.cpu_cores, memory_gib=service.memory_gib)
                    for _ in range(want - len(current)):
                        if not await self.quotas.fits(uow, service.workspace_id, replica_usage):
                            service.status_message = "waiting for the workspace's quota to allow another replica"
                            changed = True
                            break
                        placement = place(fleet, request)
                        if placement is None:
                            service.status_message = f"waiting for room for a replica ({request.gpu_count} GPU, {request.cpu_cores} vCPU)"
                            changed = True
                            # A rolling update with no room to surge: replace the old
                            # generation one replica at a time (requests are held, not
                            # failed, should none be ready for a moment).
                            old = [r for r in service.replicas if r.generation != service.generation]
                            if old and not any(r.state == "draining" for r in old):
                                victim = min(old, key=lambda r: (router.ready(r.id), router.in_flight(r.id)))
                                victim.state = "draining"
                                service.status_message = f"rolling update: replacing {victim.id} (no room for an extra replica)"
                            break
                        host = hosts[placement.host_id]
                        port = await _free_port(uow, host)
                        chosen = sorted((g for g in host.gpus if g.uuid in set(placement.gpu_uuids)), key=lambda g: g.index)
                        replica = Replica(id=service.new_replica_id(), generation=service.generation, host_id=host.id,
                                          host_port=port, address=host.private_address or "127.0.0.1",
                                          gpu_uuids=[g.uuid for g in chosen], gpu_indices=[g.index for g in chosen],
                                          created_at=self.clock.now().isoformat())
                        fleet.allocate(placement.allocation(request))
                        service.replicas.append(replica)
                        current.append(replica)
                        changed = True
                elif len(current) > want:
                    # drain the surplus: not ready first, then the newest
                    surplus = sorted(current, key=lambda r: (router.ready(r.id), r.created_at), reverse=False)[: len(current) - want]
                    for r in surplus:
                        r.state = "draining"
                        changed = True
                old = [r for r in service.replicas if r.generation != service.generation and r.state != "draining"]
                ready_new = [r for r in current if router.ready(r.id)]
                if old and len(ready_new) >= max(1, min(want, len(current))):
                    for r in old:
                        r.state = "draining"
                    service.status_message = f"generation {service.generation} ready: older replicas drained"
                    changed = True
                if changed:
                    await uow.inference_services.update(service)
                    touched |= {r.host_id for r in service.replicas} | before.get(service.id, set())
                    saved = True
                out[service.id] = service
            if saved:  # a commit runs a queue pass: not every second for nothing
                await uow.commit()
        if touched and self.notify is not None:
            self.notify(touched)
        return out


async def _free_port(uow: UnitOfWork, host: Host) -> int:
    used = set(await uow.allocations.ports_on_host(host.id))
    for s in await uow.inference_services.list_active():
        used |= {r.host_port for r in s.replicas if r.host_id == host.id}
    low, high = host.port_range
    span = high - low + 1
    start = secrets.randbelow(span)
    for i in range(span):
        port = low + (start + i) % span
        if port not in used:
            return port
    raise Conflict(f"host {host.name} has no free ports left", code="no_free_ports")


def replica_spec(service: InferenceService, replica: Replica, fake_gpus: bool, mounts: tuple = ()) -> JobNodeSpec:
    return JobNodeSpec(
        node_id=replica.id, job_id=service.id, image=service.image, command=list(service.command),
        env={**service.env, "REMOTEGPU_SERVICE_ID": service.id, "REMOTEGPU_REPLICA_ID": replica.id, "PORT": str(service.port)},
        cpu_cores=float(service.cpu_cores), memory_gib=float(service.memory_gib), gpu_uuids=list(replica.gpu_uuids),
        gpu_indices=list(replica.gpu_indices), fake_gpus=fake_gpus, alias=f"replica-{replica.id.rsplit('.r', 1)[-1]}",
        workspace_id=service.workspace_id, ports={service.port: replica.host_port}, network=f"svc-{service.id}",
        data_mounts=tuple(mounts),
    )


@dataclass
class ServiceNodes:
    """Replicas in the agent conversation (called by ``JobHeartbeat`` for every beat)."""

    clock: Clock
    data_mounts: DataMountResolver | None = None  # the storage context: replicas' mounts

    async def __call__(self, uow: UnitOfWork, host: Host, observed: dict[str, ObservedJobNode], healthy: bool) -> list[DesiredJobNode]:
        desired: list[DesiredJobNode] = []
        known: set[str] = set()
        services = await uow.inference_services.list_active()
        for service in services:
            changed = False
            for r in service.replicas:
                if r.host_id != host.id:
                    continue
                known.add(r.id)
                seen = observed.get(r.id)
                if healthy and r.state in ("starting", "running"):
                    if seen is not None and seen.status == "running" and r.state == "starting":
                        r.state, changed = "running", True
                    elif seen is not None and seen.status in ("exited", "failed"):
                        r.state, r.message, changed = "failed", seen.message or f"exited ({seen.exit_code})", True
                    elif seen is None and r.state == "running":
                        r.state, r.message, changed = "failed", "its container disappeared", True
                want = "running" if r.state in ("starting", "running", "draining") else "removed"
                spec = None
                if want == "running":
                    mounts = await resolve_mounts(self.data_mounts, service.workspace_id, service.data_mounts)
                    spec = replica_spec(service, r, host.fake_gpus, mounts)
                desired.append(DesiredJobNode(r.id, want, spec, NO_LOGS, keep_network=True))
            if changed:
                await uow.inference_services.update(service)
        active = {s.id for s in services}
        for node_id in observed:
            if node_id.startswith(REPLICA_PREFIX) and node_id not in known:
                # scaled down: keep the service's network for its next replica; deleted: drop it
                service_id = node_id[len(REPLICA_PREFIX):].split(".", 1)[0]
                desired.append(DesiredJobNode(node_id, "removed", None, NO_LOGS, keep_network=service_id in active))
        return desired
