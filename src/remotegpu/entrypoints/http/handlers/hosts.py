from __future__ import annotations

from dataclasses import asdict

from remotegpu.application.fleet.hosts import HostWithUsage
from remotegpu.domain.fleet.models import HostStatus
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.environments import (
    ClusterNodeOut,
    HostConditionOut,
    HostCreatedOut,
    HostGpuOut,
    HostIn,
    HostOut,
    HostPatchIn,
    HostRemoveQuery,
    HostTokenOut,
    QuarantinedOut,
)

TAGS = ["hosts"]
HOST = "/api/v1/hosts/{host_id}"


def host_out(item: HostWithUsage) -> HostOut:
    h = item.host
    return HostOut(
        id=h.id, name=h.name, status=h.status, schedulable=h.admin_status, address=h.address, private_address=h.private_address,
        labels=h.labels, cpu_cores=h.cpu_cores,
        memory_gib=h.memory_gib, disk_gib=h.disk_gib, runtime=h.runtime, runtime_healthy=h.runtime_healthy,
        fake_gpus=h.fake_gpus, last_heartbeat_at=h.last_heartbeat_at, environments=item.environments,
        allow_loopback=h.allow_loopback, cpu_overcommit=h.cpu_overcommit, memory_overcommit=h.memory_overcommit,
        schedulable_cpu_cores=h.schedulable_cpu_cores, schedulable_memory_gib=h.schedulable_memory_gib,
        conditions=[HostConditionOut(code=c.code, message=c.message, details=c.details) for c in item.conditions],
        gpus=[
            HostGpuOut(
                index=g.index, uuid=g.uuid, model=g.model, memory_mib=g.memory_mib, numa_node=g.numa_node,
                nvlink_group=g.nvlink_group, healthy=g.healthy, allocated=g.uuid in item.allocated_gpus,
                utilization=h.gpu_utilization.get(g.uuid),
            )
            for g in h.gpus
        ],
        quarantined=[QuarantinedOut(env_id=q.env_id, host_id=q.host_id, since=q.since) for q in h.quarantined],
        cluster_nodes=[ClusterNodeOut(**asdict(n)) for n in h.cluster_nodes],
    )


@api.get("/api/v1/hosts", response=Page[HostOut], tags=TAGS, errors=[401, 403])
async def list_hosts(call: Call) -> Page[HostOut]:
    """GPU hosts with their GPUs, status and last heartbeat (platform admins)."""
    items = await call.container.host_service().list(call.user)
    return Page[HostOut](items=[host_out(i) for i in items], total=len(items))


@api.post("/api/v1/hosts", body=HostIn, response=HostCreatedOut, status=201, tags=TAGS, errors=[401, 403, 409, 422])
async def add_host(call: Call) -> HostCreatedOut:
    """Add a host; answers the one-time join token for `remotegpu agent --server URL --token TOKEN`."""
    b: HostIn = call.body
    host, token = await call.container.host_service().add(
        call.user, b.name, address=b.address, labels=b.labels, allow_loopback=b.allow_loopback,
    )
    out = host_out(HostWithUsage(host, set(), 0))
    return HostCreatedOut(**out.model_dump(), join_token=token)


@api.get(HOST, response=HostOut, tags=TAGS, errors=[401, 403, 404])
async def get_host(call: Call) -> HostOut:
    """One host (platform admins)."""
    return host_out(await call.container.host_service().get(call.user, call.path("host_id")))


@api.patch(HOST, body=HostPatchIn, response=HostOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_host(call: Call) -> HostOut:
    """Set the host's CPU / memory overcommit ratios (platform admins): the scheduler counts
    requests against capacity × ratio, containers keep their full limits. Omitted fields stay."""
    b: HostPatchIn = call.body
    svc = call.container.host_service()
    await svc.set_overcommit(call.user, call.path("host_id"), cpu=b.cpu_overcommit, memory=b.memory_overcommit)
    return host_out(await svc.get(call.user, call.path("host_id")))


async def _set(call: Call, status: HostStatus) -> HostOut:
    svc = call.container.host_service()
    await svc.set_status(call.user, call.path("host_id"), status)
    return host_out(await svc.get(call.user, call.path("host_id")))


@api.post(HOST + "/cordon", response=HostOut, tags=TAGS, errors=[401, 403, 404, 409])
async def cordon_host(call: Call) -> HostOut:
    """Take no new environments; running ones stay. An offline host stays offline and is cordoned when it reports."""
    return await _set(call, HostStatus.CORDONED)


@api.post(HOST + "/uncordon", response=HostOut, tags=TAGS, errors=[401, 403, 404, 409])
async def uncordon_host(call: Call) -> HostOut:
    """Ready for new environments again (an offline host: once its agent reports)."""
    return await _set(call, HostStatus.READY)


@api.post(HOST + "/drain", response=HostOut, tags=TAGS, errors=[401, 403, 404, 409])
async def drain_host(call: Call) -> HostOut:
    """Cordon and stop every environment on the host (disks kept)."""
    return await _set(call, HostStatus.DRAINING)


@api.delete(HOST, query=HostRemoveQuery, status=204, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def remove_host(call: Call) -> None:
    """Remove a host: its agent token stops working, its environments turn `lost` (delete
    completes at once for them) and their GPUs and ports are freed. Refused (409
    `host_not_empty`) while the host is online with environments, unless `?force=true`."""
    await call.container.host_service().remove(call.user, call.path("host_id"), force=call.query.force)


@api.post(HOST + "/token", response=HostTokenOut, tags=TAGS, errors=[401, 403, 404])
async def rotate_host_token(call: Call) -> HostTokenOut:
    """Rotate the agent's token: answers a new one-time join token (shown only here); the
    agent's current token stops working at once. Run `remotegpu agent --token NEW` on the
    host: it registers again as the same host."""
    token = await call.container.host_service().rotate_token(call.user, call.path("host_id"))
    return HostTokenOut(host_id=call.path("host_id"), join_token=token)


@api.delete(HOST + "/token", status=204, tags=TAGS, errors=[401, 403, 404])
async def revoke_host_token(call: Call) -> None:
    """Revoke the agent's token (and any unused join token): the host's agent is refused
    from now on and the host goes offline. Rotate to let an agent back in."""
    await call.container.host_service().revoke_token(call.user, call.path("host_id"))
