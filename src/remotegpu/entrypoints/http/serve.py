"""The platform's router for inference services: ``{service id}--serve.{apps domain}``.

Answered by the same server and port as everything else, dispatched by ``Host`` in
``apps_middleware`` (an apps-domain host whose label ends ``--serve``). Per request:

1. the service (active) or 404; a private service wants ``Authorization: Bearer`` with a
   token made for it (``POST /api/v1/inference-services/{id}/tokens``), else 401 — the
   token is not passed on to the replica;
2. a ready replica — one whose health path answered (probed every 0.05 s until ready,
   then every 2 s), not draining — with the fewest requests in flight (least
   outstanding requests; ties to the first). None ready (scaled to zero, cold start,
   all replaced): the request is *held* (at most ``HOLD_SECONDS``) and counted as
   waiting, which makes the autoscaler ask for a replica at once; it goes on as soon as
   one is ready (503 ``no_replica`` only when none came in time);
3. proxied to the replica on its host's private address, the body streamed both ways
   (chunked and server-sent-event responses pass through as they come). A replica that
   refuses the connection before anything was sent is tried once more elsewhere.

Once a second the router feeds each service's concurrency to its ``Autoscaler`` and lets
``ServiceScaler`` bring the replicas to the count (placing, draining, replacing a failed
one, rolling a new generation).

Several server processes can route at once: with REMOTEGPU_REDIS_URL the requests in
flight per replica, the held requests and arrivals per service are shared through
Redis, one process (a leased leader) runs the autoscalers and the reconcile, and the
others follow the services from the database (``adapters/workloads/router_state.py``).
Readiness and the per-request statistics (latencies, cold starts) stay per process.
Without Redis the state is this process's (the embedded default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, AsyncIterator

import aiohttp
from aiohttp import hdrs, web

from remotegpu.adapters.workloads.router_state import SYNC_SECONDS, LocalRouterState
from remotegpu.application.workloads.services import ServiceScaler, token_matches
from remotegpu.domain.workloads.autoscaler import Autoscaler
from remotegpu.domain.workloads.services import InferenceService, Replica
from remotegpu.entrypoints.http.errors import error_response

if TYPE_CHECKING:
    from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.serve")

SERVE_SUFFIX = "--serve"
HOLD_SECONDS = 120.0
TICK_SECONDS = 1.0
PROBE_NOT_READY_SECONDS = 0.05
PROBE_READY_SECONDS = 2.0
#: With several routing processes, a draining replica is removed only after this long
#: (and nothing in flight anywhere): the other processes learn it drains first.
DRAIN_GRACE_SECONDS = 2.5
_HOP = {h.lower() for h in (hdrs.CONNECTION, hdrs.KEEP_ALIVE, hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION, hdrs.TE,
                            hdrs.TRAILER, hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.HOST, hdrs.AUTHORIZATION,
                            hdrs.CONTENT_LENGTH, hdrs.COOKIE)}
ROUTER_KEY = web.AppKey("serve_router", object)


class ServeRouter:
    def __init__(self, container: "Container", state=None) -> None:
        self._container = container
        # Shared with the other routing processes (Redis) or this process's own.
        self.state = state if state is not None else LocalRouterState()
        self.leading = False  # this process runs the autoscalers (always, without Redis)
        self._draining_since: dict[str, float] = {}
        self.scaler = ServiceScaler(container.uow, container.clock(), notify=container.agent_service().poke,
                                    quotas=container.workspace_policy())
        self.services: dict[str, InferenceService] = {}
        self._inflight: dict[str, int] = {}
        self._ready: set[str] = set()
        self._probed_at: dict[str, float] = {}
        self._waiting: dict[str, int] = {}
        self._arrivals: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._scalers: dict[str, Autoscaler] = {}
        self._policies: dict[str, object] = {}
        self.stats: dict[str, dict] = {}
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    # --- RouterView -----------------------------------------------------------------------
    def ready(self, replica_id: str) -> bool:
        return replica_id in self._ready

    def in_flight(self, replica_id: str) -> int:
        """Requests in flight to the replica from every routing process."""
        return self._inflight.get(replica_id, 0) + self.state.remote_in_flight(replica_id)

    def drained(self, replica_id: str) -> bool:
        """Nothing in flight to it anywhere, and (several processes) it has drained long
        enough that every process knows not to send it more."""
        if self.in_flight(replica_id) != 0:
            return False
        if not self.state.shared:
            return True
        since = self._draining_since.get(replica_id)
        return since is not None and time.monotonic() - since >= DRAIN_GRACE_SECONDS

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        await self.state.start(self._wake.set)
        self._tasks = [asyncio.create_task(self._scale_loop(), name="serve-scale"),
                       asyncio.create_task(self._probe_loop(), name="serve-probe")]
        if self.state.shared:
            self._tasks.append(asyncio.create_task(self._sync_loop(), name="serve-sync"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.state.stop()
        if self._session is not None:
            await self._session.close()

    async def _scale_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("service scaling failed")
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away for a moment: counts are this process's meanwhile
                log.warning("router state: sync failed", exc_info=True)
                await asyncio.sleep(1.0)
            await asyncio.sleep(SYNC_SECONDS)

    async def _sync(self) -> None:
        arrivals, self._arrivals = self._arrivals, {}
        await self.state.publish(dict(self._inflight), dict(self._waiting), arrivals)

    async def _held(self) -> None:
        """A request held here: the leader (maybe another process) reconciles now."""
        try:
            await self._sync()
            await self.state.poke()
        except Exception:  # noqa: BLE001 - the next sync and tick carry it anyway
            log.warning("router state: poke failed", exc_info=True)

    async def tick(self) -> None:
        now = time.monotonic()
        if not await self.state.leader():
            # Another process scales: follow the services it saves.
            self.leading = False
            self._scalers.clear()
            self._policies.clear()
            async with self._container.read_uow() as uow:
                self.services = {s.id: s for s in await uow.inference_services.list_active()}
            self._after_tick(now)
            return
        self.leading = True
        remote_arrivals = await self.state.take_arrivals()
        desired = {}
        for sid, service in self.services.items():
            policy = service.autoscale
            if self._policies.get(sid) != policy:
                self._policies[sid] = policy
                self._scalers[sid] = Autoscaler(policy)
            scaler = self._scalers[sid]
            waiting = self._waiting.get(sid, 0) + self.state.remote_waiting(sid)
            inflight = sum(self.in_flight(r.id) for r in service.replicas) + waiting
            scaler.observe(now, inflight, self._arrivals.pop(sid, 0) + remote_arrivals.get(sid, 0))
            current = [r for r in service.replicas if r.generation == service.generation and r.state != "draining"]
            desired[sid] = scaler.decide(now, len(current), waiting)
        before = _shape(self.services)
        self.services = await self.scaler.reconcile(desired, self)
        if self.state.shared and _shape(self.services) != before:
            await self.state.poke()  # the others reload the replicas now
        self._after_tick(now)

    def _after_tick(self, now: float) -> None:
        for sid in list(self._scalers):
            if sid not in self.services:
                del self._scalers[sid]
        live = {r.id for s in self.services.values() for r in s.replicas}
        for rid in list(self._ready):
            if rid not in live:
                self._ready.discard(rid)
        draining = {r.id for s in self.services.values() for r in s.replicas if r.state == "draining"}
        self._draining_since = {rid: self._draining_since.get(rid, now) for rid in draining}

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_NOT_READY_SECONDS)
            now = time.monotonic()
            probes = []
            for service in list(self.services.values()):
                for r in service.replicas:
                    if r.state not in ("starting", "running", "draining"):
                        continue  # (starting: its agent may not have said so yet, the probe finds out)
                    every = PROBE_READY_SECONDS if r.id in self._ready else PROBE_NOT_READY_SECONDS
                    if now - self._probed_at.get(r.id, 0) >= every:
                        self._probed_at[r.id] = now
                        probes.append(self._probe(service, r))
            if probes:
                await asyncio.gather(*probes, return_exceptions=True)

    async def _probe(self, service: InferenceService, r: Replica) -> None:
        assert self._session is not None
        url = f"http://{r.address}:{r.host_port}{service.health_path}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=1.0)) as resp:
                ok = resp.status < 500
        except Exception:  # noqa: BLE001 - not ready
            ok = False
        if ok and r.id not in self._ready:
            self._ready.add(r.id)
            log.info("replica %s of service %s is ready", r.id, service.id)
            self._events.setdefault(service.id, asyncio.Event()).set()
        elif not ok and r.id in self._ready and r.state != "draining":
            self._ready.discard(r.id)

    # --- requests -------------------------------------------------------------------------
    def _pick(self, service: InferenceService, avoid: set[str]) -> Replica | None:
        best = None
        for r in service.replicas:
            if r.state not in ("starting", "running") or r.id not in self._ready or r.id in avoid:
                continue
            if best is None or self.in_flight(r.id) < self.in_flight(best.id):
                best = r
        return best

    async def handle(self, request: web.Request, service_id: str) -> web.StreamResponse:
        service = await self._service(service_id)
        if service is None:
            return error_response(404, "not_found", "no such inference service")
        if not service.public:
            scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
            if scheme.lower() != "bearer" or not token_matches(service, token.strip()):
                return error_response(401, "unauthenticated", "send 'Authorization: Bearer <a token of this service>'")
        started = time.monotonic()
        stats = self.stats.setdefault(service_id, {"requests": 0, "errors": 0, "cold_starts": 0, "latencies": deque(maxlen=2000),
                                                   "arrived": deque(maxlen=100_000)})
        stats["requests"] += 1
        stats["arrived"].append(started)
        self._arrivals[service_id] = self._arrivals.get(service_id, 0) + 1
        body = await request.read() if request.body_exists else None
        tried: set[str] = set()
        for attempt in range(2):
            replica = await self._wait_for_replica(service_id, tried, stats)
            if replica is None:
                stats["errors"] += 1
                return error_response(503, "no_replica", "no replica of this service became ready in time")
            tried.add(replica.id)
            self._inflight[replica.id] = self._inflight.get(replica.id, 0) + 1
            try:
                response = await self._forward(request, replica, body)
            except _NotSent:
                if attempt == 0:
                    continue
                stats["errors"] += 1
                return error_response(502, "replica_unreachable", "the replica did not answer")
            finally:
                self._inflight[replica.id] -= 1
            stats["latencies"].append(time.monotonic() - started)
            return response
        return error_response(502, "replica_unreachable", "the replica did not answer")

    async def _service(self, service_id: str) -> InferenceService | None:
        service = self.services.get(service_id)
        if service is not None:
            return service
        async with self._container.read_uow() as uow:
            found = await uow.inference_services.get(service_id)
        if found is None or found.status.value != "active":
            return None
        self.services.setdefault(service_id, found)  # known from now on: the scale loop takes it
        return self.services[service_id]

    async def _wait_for_replica(self, service_id: str, avoid: set[str], stats: dict) -> Replica | None:
        deadline = time.monotonic() + HOLD_SECONDS
        held = False
        try:
            while True:
                service = self.services.get(service_id)
                if service is None:
                    return None
                replica = self._pick(service, avoid)
                if replica is not None:
                    return replica
                if not held:
                    held = True
                    stats["cold_starts"] += 1 if not any(r.id in self._ready for r in service.replicas) else 0
                    self._waiting[service_id] = self._waiting.get(service_id, 0) + 1
                    self._wake.set()  # the scale loop runs now: a replica for the held request
                    if self.state.shared:
                        asyncio.ensure_future(self._held())
                event = self._events.setdefault(service_id, asyncio.Event())
                event.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, 0.5))
                except asyncio.TimeoutError:
                    pass
        finally:
            if held:
                self._waiting[service_id] -= 1

    async def _forward(self, request: web.Request, replica: Replica, body: bytes | None) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["X-Forwarded-Host"] = request.host
        url = f"http://{replica.address}:{replica.host_port}{request.path_qs}"
        try:
            upstream = await self._session.request(request.method, url, headers=headers, data=body, allow_redirects=False)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise _NotSent() from exc
        try:
            out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    out.headers.add(k, v)
            if upstream.headers.get(hdrs.CONTENT_LENGTH) and hdrs.CONTENT_ENCODING not in upstream.headers:
                out.content_length = int(upstream.headers[hdrs.CONTENT_LENGTH])
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            upstream.release()

    def snapshot(self, service_id: str) -> dict:
        """Per-service figures for the API: requests, errors, cold starts, latency p50/p99, ready replicas."""
        stats = self.stats.get(service_id, {})
        lat = sorted(stats.get("latencies", []))

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        service = self.services.get(service_id)
        return {
            "requests": stats.get("requests", 0), "errors": stats.get("errors", 0), "cold_starts": stats.get("cold_starts", 0),
            "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99),
            "rps_1m": round(sum(1 for t in stats.get("arrived", ()) if t >= time.monotonic() - 60) / 60, 3),
            "ready_replicas": sum(1 for r in (service.replicas if service else []) if r.id in self._ready),
            "in_flight": sum(self.in_flight(r.id) for r in (service.replicas if service else [])),
        }


def _shape(services: dict[str, InferenceService]) -> dict[str, tuple]:
    return {sid: tuple((r.id, r.state) for r in s.replicas) for sid, s in services.items()}


class _NotSent(Exception):
    """The replica could not be reached; nothing was sent to the client yet."""


def serve_ctx(container: "Container"):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        router = app[ROUTER_KEY]
        await router.start()
        yield
        await router.stop()

    return ctx


def install(app: web.Application, container: "Container") -> ServeRouter:
    router = ServeRouter(container, container.serve_router_state())
    app[ROUTER_KEY] = router
    return router
