"""Glue between environments and the pure scheduler: snapshot the fleet, allocate, release.

Everything here runs inside a unit of work that holds ``lock_scheduling``.
"""

from __future__ import annotations

import secrets

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.environments.models import (
    DESKTOP_CONTAINER_PORT,
    JUPYTER_CONTAINER_PORT,
    SSH_CONTAINER_PORT,
    Environment,
    EnvStatus,
    GpuAllocation,
    HostPort,
    is_desktop_image,
)
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.scheduling import Allocation, FleetState, Placement, PlacementRequest, place
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.workloads.models import JobStatus

HOLDING = [s for s in EnvStatus if s.holds_resources]
JOB_HOLDING = [s for s in JobStatus if s.holds_resources]


def request_of(env: Environment, *, pin: bool, prefer_hosts: frozenset[str] = frozenset()) -> PlacementRequest:
    return PlacementRequest(
        gpu_count=env.gpus_wanted,
        gpu_model=env.gpu_model if env.gpus_wanted else None,
        cpu_cores=env.cpu_cores,
        memory_gib=env.memory_gib,
        pin_host_id=env.host_id if pin else None,
        prefer_gpu_uuids=tuple(env.last_gpu_uuids) if pin else (),
        prefer_hosts=frozenset() if pin else prefer_hosts,
    )


def must_pin(env: Environment) -> bool:
    """Once an environment has started somewhere, its disk lives there: it restarts there."""
    return env.host_id is not None


async def fleet_snapshot(uow: UnitOfWork, hosts: list[Host] | None = None) -> FleetState:
    hosts = hosts if hosts is not None else await uow.hosts.list()
    by_env: dict[str, list[str]] = {}
    for a in await uow.allocations.gpus():
        by_env.setdefault(a.environment_id, []).append(a.gpu_uuid)
    allocations = [
        Allocation(host_id, tuple(by_env.get(env_id, ())), cpu_cores, memory_gib)
        for env_id, host_id, cpu_cores, memory_gib in await uow.environments.held_resources()
    ]
    # Training jobs' nodes hold GPUs, CPU and memory too (application/workloads).
    for job in await uow.training_jobs.list_by_status(JOB_HOLDING):
        allocations += [Allocation(n.host_id, tuple(n.gpu_uuids), job.cpu_cores, job.memory_gib) for n in job.node_states]
    # ... and inference services' replicas, from placement until removed.
    for service in await uow.inference_services.list_active():
        allocations += [Allocation(r.host_id, tuple(r.gpu_uuids), service.cpu_cores, service.memory_gib) for r in service.replicas]
    return FleetState(hosts, allocations)


PORT_PURPOSES = ("ssh", "jupyter")
#: Desktop images (``is_desktop_image``) also publish their VNC server.
DESKTOP_PURPOSE = "desktop"


def port_purposes(env: Environment) -> tuple[str, ...]:
    return PORT_PURPOSES + ((DESKTOP_PURPOSE,) if is_desktop_image(env.image) else ())


async def allocate(uow: UnitOfWork, env: Environment, placement: Placement, host: Host) -> None:
    """Record the placement's GPUs for ``env``, and its host ports (SSH, Jupyter) unless
    it already holds them there: an environment keeps its ports for its whole life. New
    ports are picked before anything is written: a host out of ports (Conflict) leaves
    no GPU row behind."""
    held = await uow.allocations.ports_of(env.id)
    if any(p.host_id != placement.host_id for p in held):
        # Ports on another host mean nothing here (an environment moved by an admin).
        await uow.allocations.release_ports(env.id)
        held = []
    missing = [purpose for purpose in port_purposes(env) if purpose not in {p.purpose for p in held}]
    ports: list[int] = []
    if missing:
        used = await uow.allocations.ports_on_host(placement.host_id)
        ports = _pick_ports(host, used, len(missing))
    await uow.allocations.add_gpus([GpuAllocation(env.id, placement.host_id, u) for u in placement.gpu_uuids])
    if missing:
        await uow.allocations.add_ports([HostPort(placement.host_id, port, purpose, env.id) for port, purpose in zip(ports, missing)])
    env.host_id = placement.host_id
    if not env.jupyter_token:
        env.jupyter_token = secrets.token_urlsafe(24)


async def release_gpus(uow: UnitOfWork, env: Environment) -> None:
    """Stop: free the GPUs (remembered as the ones to ask for first on the next start);
    host ports and disk stay with the environment."""
    held = [a.gpu_uuid for a in await uow.allocations.gpus_of(env.id)]
    if held:
        env.last_gpu_uuids = held
    await uow.allocations.release_gpus(env.id)


def _pick_ports(host: Host, used: set[int], count: int) -> list[int]:
    low, high = host.port_range
    # Start from a random offset so concurrent placements on replicas rarely collide.
    span = high - low + 1
    start = secrets.randbelow(span)
    picked: list[int] = []
    for i in range(span):
        port = low + (start + i) % span
        if port not in used:
            picked.append(port)
            if len(picked) == count:
                return picked
    raise Conflict(f"host {host.name} has no free ports left in {low}-{high}", code="no_free_ports")


async def try_place(uow: UnitOfWork, env: Environment, fleet: FleetState, hosts_by_id: dict[str, Host]) -> Placement | None:
    """Place and allocate ``env`` now if it fits; None when it must wait."""
    request = request_of(env, pin=must_pin(env))
    placement = place(fleet, request)
    if placement is None:
        return None
    await allocate(uow, env, placement, hosts_by_id[placement.host_id])
    fleet.allocate(placement.allocation(request))
    return placement


def container_ports(ports: list[HostPort]) -> dict[int, int]:
    by_purpose = {p.purpose: p.port for p in ports}
    mapping = {}
    if "ssh" in by_purpose:
        mapping[SSH_CONTAINER_PORT] = by_purpose["ssh"]
    if "jupyter" in by_purpose:
        mapping[JUPYTER_CONTAINER_PORT] = by_purpose["jupyter"]
    if DESKTOP_PURPOSE in by_purpose:
        mapping[DESKTOP_CONTAINER_PORT] = by_purpose[DESKTOP_PURPOSE]
    return mapping
