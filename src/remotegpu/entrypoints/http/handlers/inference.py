"""Inference services: ``/api/v1/inference-services`` — create, list, get, update
(a change of image, command, variables, port or health path is a rolling update),
delete, service tokens. Requests go to ``url`` (the router: ``entrypoints/http/serve.py``)."""

from __future__ import annotations

from remotegpu.domain.workloads.services import InferenceService
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.handlers.workloads import mounts_out
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.workloads import (
    InferenceServiceIn,
    InferenceServiceListQuery,
    InferenceServiceOut,
    InferenceServicePatchIn,
    ReplicaOut,
    ServiceStatsOut,
    ServiceTokenOut,
)

TAGS = ["inference-services"]
ONE = "/api/v1/inference-services/{service_id}"
_EMPTY = {"requests": 0, "errors": 0, "cold_starts": 0, "latency_p50_ms": None, "latency_p99_ms": None, "rps_1m": 0.0,
          "ready_replicas": 0, "in_flight": 0}


def service_url(call: Call, service_id: str) -> str:
    from remotegpu.entrypoints.http.apps import APPS_KEY

    config = call.request.app[APPS_KEY].config
    from urllib.parse import urlsplit

    parts = urlsplit(config.console_origin)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{service_id}--serve.{config.apps_domain}{port}/"


def service_out(call: Call, s: InferenceService) -> InferenceServiceOut:
    from remotegpu.entrypoints.http.serve import ROUTER_KEY

    router = call.request.app.get(ROUTER_KEY)
    stats = router.snapshot(s.id) if router is not None else _EMPTY
    return InferenceServiceOut(
        id=s.id, workspace_id=s.workspace_id, owner_id=s.owner_id, name=s.name, url=service_url(call, s.id), image=s.image,
        command=s.command, port=s.port, env=s.env, health_path=s.health_path, gpus=s.gpus, gpu_model=s.gpu_model,
        cpu_cores=s.cpu_cores, memory_gib=s.memory_gib, min_replicas=s.autoscale.min_replicas,
        max_replicas=s.autoscale.max_replicas, target_concurrency=s.autoscale.target_concurrency,
        scale_down_delay_s=s.autoscale.scale_down_delay_s, scale_to_zero_after_s=s.autoscale.scale_to_zero_after_s,
        public=s.public, status=s.status.value, status_message=s.status_message,
        generation=s.generation, desired_replicas=s.desired_replicas,
        replicas=[ReplicaOut(id=r.id, generation=r.generation, host_id=r.host_id, state=r.state,
                             ready=bool(router and router.ready(r.id)), message=r.message) for r in s.replicas],
        mounts=mounts_out(s.data_mounts), stats=ServiceStatsOut(**stats), created_at=s.created_at,
    )


@api.post("/api/v1/inference-services", body=InferenceServiceIn, response=InferenceServiceOut, status=201, tags=TAGS,
          errors=[401, 403, 404, 422])
async def create_inference_service(call: Call) -> InferenceServiceOut:
    """Create a service: replicas follow the load between min and max (0: scale to zero)."""
    b = call.body.model_dump()
    ws = b.pop("workspace_id")
    service = await call.container.inference_service_service().create(call.user, ws, **b)
    return service_out(call, service)


@api.get("/api/v1/inference-services", query=InferenceServiceListQuery, response=Page[InferenceServiceOut], tags=TAGS,
         errors=[401, 404, 422])
async def list_inference_services(call: Call) -> Page[InferenceServiceOut]:
    """A workspace's inference services, newest first."""
    q: InferenceServiceListQuery = call.query
    items, total = await call.container.inference_service_service().list(call.user, q.workspace_id, limit=q.limit, offset=q.offset)
    return Page[InferenceServiceOut](items=[service_out(call, s) for s in items], total=total)


@api.get(ONE, response=InferenceServiceOut, tags=TAGS, errors=[401, 404])
async def get_inference_service(call: Call) -> InferenceServiceOut:
    """One service: its URL, replicas (ready or not), and the router's figures."""
    return service_out(call, await call.container.inference_service_service().get(call.user, call.path("service_id")))


@api.patch(ONE, body=InferenceServicePatchIn, response=InferenceServiceOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_inference_service(call: Call) -> InferenceServiceOut:
    """Change settings; a new image, command, variables, port or health path rolls out
    (new replicas ready before the old ones drain: no request fails)."""
    changes = call.body.model_dump(exclude_none=True)
    service = await call.container.inference_service_service().update(call.user, call.path("service_id"), **changes)
    return service_out(call, service)


@api.delete(ONE, tags=TAGS, errors=[401, 403, 404])
async def delete_inference_service(call: Call) -> None:
    """Delete: replicas go, GPUs are free at once."""
    await call.container.inference_service_service().delete(call.user, call.path("service_id"))


@api.post(ONE + "/tokens", response=ServiceTokenOut, status=201, tags=TAGS, errors=[401, 403, 404])
async def create_service_token(call: Call) -> ServiceTokenOut:
    """A token for this service's URL only (shown once)."""
    return ServiceTokenOut(token=await call.container.inference_service_service().new_token(call.user, call.path("service_id")))
