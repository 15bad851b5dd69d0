from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from remotegpu.application.environments.access_gateway import Endpoints, UnsafeSshEndpoint, gateway_endpoint
from remotegpu.application.environments.service import CreateRequest, EnvironmentView
from remotegpu.application.shared.read_cache import Memo
from remotegpu.domain.environments.variables import ENV_NAME_RE
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.keys import APP_URL
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.ssh_gateway_runner import gateway_host_key
from remotegpu.entrypoints.http.schemas.common import Page, PageQuery
from remotegpu.entrypoints.http.schemas.environments import (
    DataMountOut,
    AccessOut,
    EnvironmentEventOut,
    EnvironmentIn,
    EnvironmentListQuery,
    EnvironmentOut,
    GpuOut,
    GpuTypeList,
    GpuTypeOut,
    GpuTypeQuery,
    DesktopAccessOut,
    JupyterAccessOut,
    PortOut,
    SshAccessOut,
    StartIn,
    TerminalAccessOut,
    VariableOut,
)

log = logging.getLogger("remotegpu.http.environments")

TAGS = ["environments"]
ENV = "/api/v1/environments/{environment_id}"
OPS = [401, 403, 404, 409]


def variables_out(view: EnvironmentView) -> tuple[dict[str, str], list[VariableOut]]:
    """Plain variables' values only for those who may operate the environment; secret
    ones by name only, to everyone."""
    e, shown = view.env, view.manageable
    plain = [VariableOut(name=k, secret=False, value=v if shown else None) for k, v in sorted(e.env.items())]
    secret = [VariableOut(name=k, secret=True, value=None) for k in sorted(e.secret_env)]
    return (dict(e.env) if shown else {}), plain + secret


def env_out(view: EnvironmentView) -> EnvironmentOut:
    """Built without validation (``model_construct``): every value is already of its
    schema's type in the domain, and a list of 50 would re-check 1,500 of them per request
    (a third of the list's Python time). tests/unit/test_env_out.py holds the types equal."""
    e = view.env
    env, variables = variables_out(view)
    return EnvironmentOut.model_construct(
        id=e.id, name=e.name, workspace_id=e.workspace_id, owner_id=e.owner_id, status=e.status, desired=e.desired,
        status_message=e.status_message, queue_position=view.queue_position, image=e.image, gpu_count=e.gpu_count,
        gpu_model=e.gpu_model, with_gpu=e.with_gpu, cpu_cores=e.cpu_cores, memory_gib=e.memory_gib, disk_gib=e.disk_gib,
        host_id=e.host_id,
        host_name=view.host_name,
        gpus=[GpuOut.model_construct(index=g.index, uuid=g.uuid, model=g.model, memory_mib=g.memory_mib) for g in view.gpus],
        ports=[PortOut.model_construct(purpose=p.purpose, port=p.port) for p in view.ports], env=env, variables=variables,
        stop_after_minutes=e.stop_after_minutes, idle_stop_minutes=e.idle_stop_minutes, shared=e.shared,
        created_at=e.created_at, started_at=e.started_at,
        mounts=[DataMountOut.model_construct(kind=m["kind"], repository_id=m["repository_id"], name=m["name"], version=m["ref"],
                                             path=f"/{m['kind']}s/{m['name']}") for m in e.data_mounts],
    )


def env_fields(view: EnvironmentView) -> dict[str, Any]:
    """``env_out`` as a plain dict, in the schema's field order, for ``fast_json``: the hot
    GETs (list, detail) skip pydantic altogether. tests/unit/test_env_out.py holds the
    bytes equal to ``env_out(view).model_dump_json()``."""
    e, shown = view.env, view.manageable
    plain = e.env
    variables = [{"name": k, "secret": False, "value": plain[k] if shown else None} for k in sorted(plain)]
    if e.secret_env:
        variables += [{"name": k, "secret": True, "value": None} for k in sorted(e.secret_env)]
    return {
        "id": e.id, "name": e.name, "workspace_id": e.workspace_id, "owner_id": e.owner_id, "status": e.status.value,
        "desired": e.desired.value, "status_message": e.status_message, "queue_position": view.queue_position,
        "image": e.image, "gpu_count": e.gpu_count, "gpu_model": e.gpu_model, "with_gpu": e.with_gpu,
        "cpu_cores": e.cpu_cores, "memory_gib": e.memory_gib, "disk_gib": e.disk_gib, "host_id": e.host_id,
        "host_name": view.host_name,
        "gpus": [{"index": g.index, "uuid": g.uuid, "model": g.model, "memory_mib": g.memory_mib} for g in view.gpus],
        "ports": [{"purpose": p.purpose, "port": p.port} for p in view.ports],
        "env": dict(plain) if shown else {}, "variables": variables,
        "stop_after_minutes": e.stop_after_minutes, "idle_stop_minutes": e.idle_stop_minutes, "shared": e.shared,
        "created_at": e.created_at, "started_at": e.started_at,
        "mounts": [{"kind": m["kind"], "repository_id": m["repository_id"], "name": m["name"], "version": m["ref"],
                    "path": f"/{m['kind']}s/{m['name']}"} for m in e.data_mounts],
    }


class _Fragments:
    """Each environment's JSON, kept for the environment objects the service's epoch
    cache shares between requests (application/shared/read_cache.py): the same object
    is the same answer, so a page of 50 is serialised once, not on every request. Keyed
    by identity (the entry holds the object, so its id cannot be reused meanwhile), one
    entry per (object, whether values are shown); bounded."""

    def __init__(self, max_entries: int = 8192):
        self.max_entries = max_entries
        self._entries: dict[tuple[int, bool], tuple[object, bytes]] = {}

    def of(self, view: EnvironmentView) -> bytes:
        key = (id(view.env), view.manageable)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is view.env:
            return entry[1]
        body = orjson.dumps(env_fields(view), option=orjson.OPT_UTC_Z)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (view.env, body)
        return body


_fragments = _Fragments()


def fast_json(data: Any) -> web.Response:
    """A JSON answer serialised by orjson (datetimes as pydantic writes them: UTC as ``Z``)."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_UTC_Z), content_type="application/json")


@api.get("/api/v1/gpu-types", query=GpuTypeQuery, response=GpuTypeList, tags=TAGS, errors=[401, 422])
async def list_gpu_types(call: Call) -> GpuTypeList:
    """GPU models with total and free counts, and whether the request being composed
    (`gpu_count` × model with `cpu_cores` and `memory_gib`) would start now: what the create form offers."""
    q: GpuTypeQuery = call.query
    epoch, types, memory = await call.container.environment_service().capacity(q.gpu_count, q.cpu_cores, q.memory_gib)
    prices = await call.container.billing_service().hourly_prices(epoch)
    # The capacity and the prices are shared answers while they are the truth (the same
    # objects): their document is written once for both.
    kept = _gpu_type_docs.get(types, (id(prices), id(memory)), lambda: (prices, memory, _gpu_type_doc(types, memory, prices)))
    if kept[0] is not prices or kept[1] is not memory:
        kept = (prices, memory, _gpu_type_doc(types, memory, prices))
    return web.Response(body=kept[2], content_type="application/json")


def _gpu_type_doc(types, memory: dict[str, int], prices: dict[str, int]) -> bytes:
    items = [
        GpuTypeOut(
            model=t.model, total=t.total, free=t.free, memory_mib=memory.get(t.model, 0), startable_now=t.startable_now,
            cpu_cores_free=t.cpu_cores_free, memory_gib_free=t.memory_gib_free, max_cpu_cores=t.max_cpu_cores,
            max_memory_gib=t.max_memory_gib, ever_fits=t.ever_fits, hourly_price=prices.get(t.model),
        )
        for t in types
    ]
    return GpuTypeList(items=items, total=len(items)).model_dump_json().encode()


_gpu_type_docs = Memo(256)
_pages = Memo(1024)  # a page of views (EnvironmentService.list: shared per answer and kind of caller) → its JSON


@api.get("/api/v1/environments", query=EnvironmentListQuery, response=Page[EnvironmentOut], tags=TAGS, errors=[401, 404, 422])
async def list_environments(call: Call) -> web.Response:
    """Environments of the caller's workspaces (or of one), newest first."""
    q: EnvironmentListQuery = call.query
    page = await call.container.environment_service().list(
        call.user, workspace_id=q.workspace_id, statuses=[q.status] if q.status else None, limit=q.limit, offset=q.offset
    )
    return web.Response(body=_pages.get(page, None, lambda: _page_doc(*page)), content_type="application/json")


def _page_doc(views: list[EnvironmentView], total: int) -> bytes:
    return b'{"items":[' + b",".join([_fragments.of(v) for v in views]) + b'],"total":' + str(total).encode() + b"}"


@api.post("/api/v1/environments", body=EnvironmentIn, response=EnvironmentOut, status=202, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def create_environment(call: Call) -> EnvironmentOut:
    """Create an environment: placed at once (starting) or waiting in the queue (queued);
    409 `never_fits` when no host could ever hold the request (it would wait forever)."""
    b: EnvironmentIn = call.body
    view = await call.container.environment_service().create(call.user, CreateRequest(**b.model_dump()))
    return env_out(view)


@api.get(ENV, response=EnvironmentOut, tags=TAGS, errors=[401, 404])
async def get_environment(call: Call) -> web.Response:
    """One environment."""
    view = await call.container.environment_service().get(call.user, call.path("environment_id"))
    return web.Response(body=_fragments.of(view), content_type="application/json")


@api.post(ENV + "/start", body=StartIn, response=EnvironmentOut, status=202, tags=TAGS, errors=OPS + [422])
async def start_environment(call: Call) -> EnvironmentOut:
    """Start a stopped environment on the host where its disk lives (or queue for it)."""
    return env_out(await call.container.environment_service().start(call.user, call.path("environment_id"), gpu=call.body.gpu))


@api.post(ENV + "/stop", response=EnvironmentOut, status=202, tags=TAGS, errors=OPS)
async def stop_environment(call: Call) -> EnvironmentOut:
    """Stop: GPUs and ports are released, the disk is kept."""
    return env_out(await call.container.environment_service().stop(call.user, call.path("environment_id")))


@api.post(ENV + "/restart", response=EnvironmentOut, status=202, tags=TAGS, errors=OPS)
async def restart_environment(call: Call) -> EnvironmentOut:
    """Restart the container of a running environment (disk kept, GPUs kept)."""
    return env_out(await call.container.environment_service().restart(call.user, call.path("environment_id")))


@api.delete(ENV, response=EnvironmentOut, status=202, tags=TAGS, errors=OPS)
async def delete_environment(call: Call) -> EnvironmentOut:
    """Delete: container, disk, GPUs and ports — nothing is left."""
    return env_out(await call.container.environment_service().delete(call.user, call.path("environment_id")))


@api.get(ENV + "/events", query=PageQuery, response=Page[EnvironmentEventOut], tags=TAGS, errors=[401, 404, 422])
async def list_environment_events(call: Call) -> web.Response:
    """Timeline of every status change with its reason, oldest first."""
    events, total = await call.container.environment_service().events(
        call.user, call.path("environment_id"), limit=call.query.limit, offset=call.query.offset
    )
    return fast_json({
        "items": [{"at": e.at, "from_status": e.from_status.value if e.from_status is not None else None,
                   "to_status": e.to_status.value, "reason": e.reason} for e in events],
        "total": total,
    })


@api.get(ENV + "/access", response=AccessOut, tags=TAGS, errors=[401, 404])
async def get_environment_access(call: Call) -> AccessOut:
    """How to get in: SSH command and ~/.ssh/config block, JupyterLab URL, terminal websocket."""
    view = await call.container.environment_service().get(call.user, call.path("environment_id"), with_host=True)
    e = view.env
    if e.status.value != "running":
        return AccessOut(ssh=None, jupyter=None, terminal=None)
    ports = {p.purpose: p.port for p in view.ports}
    try:
        endpoints = call.container.access_gateway().endpoints(e, view.host, ports, call.request.url.host or "127.0.0.1")
    except UnsafeSshEndpoint as exc:  # e.g. a host address that is no host name: offer no SSH rather than a bad line
        log.warning("no SSH access offered: %s", exc, extra={"environment_id": e.id})
        endpoints = Endpoints()
    # Names are DNS labels (checked on create, old ones rewritten by migration 0009); the id is the fallback.
    alias = f"remotegpu-{e.name if ENV_NAME_RE.fullmatch(e.name) else e.id}"
    ssh = direct = None
    if endpoints.ssh is not None:
        point = endpoints.ssh
        direct = SshAccessOut(
            host=point.host, port=point.port, user=point.user, command=point.command, config=point.config(alias),
            known_hosts=point.known_hosts or None,
        )
    settings = call.container.settings()
    if settings.ssh_gateway_port and "ssh" in ports:  # the gateway is the default way in; the port stays an option
        try:
            host = settings.ssh_gateway_host or settings.ssh_host or call.request.url.host or "127.0.0.1"
            point = gateway_endpoint(e.id, host, settings.ssh_gateway_port, gateway_host_key(settings))
            ssh = SshAccessOut(
                host=point.host, port=point.port, user=point.user, command=point.command, config=point.config(alias),
                known_hosts=point.known_hosts or None, via="gateway",
                jump_command=f"ssh -J {call.user.username}@{point.host}:{point.port} root@{e.id}",
            )
        except UnsafeSshEndpoint as exc:
            log.warning("no SSH gateway access offered: %s", exc, extra={"environment_id": e.id})
    if ssh is None:
        ssh, direct = direct, None
    return AccessOut(
        ssh=ssh,
        ssh_direct=direct,
        jupyter=JupyterAccessOut(url=call.request.app[APP_URL](e.id, "jupyter")),
        terminal=TerminalAccessOut(path=f"/api/v1/environments/{e.id}/terminal"),
        desktop=DesktopAccessOut(url=call.request.app[APP_URL](e.id, "desktop")) if "desktop" in ports else None,
    )
