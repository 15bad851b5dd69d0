"""Request id, access log, Prometheus metrics and bearer authentication middlewares."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, Counter, Histogram

from remotegpu.application.storage.env_tokens import PREFIX as ENV_TOKEN_PREFIX
from remotegpu.domain.shared.errors import PermissionDenied, Unauthenticated
from remotegpu.entrypoints.http.client_ip import client_ip
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL, REQUEST_ID
from remotegpu.entrypoints.http.session import platform_authorization, same_origin

AGENT_PATH_PREFIX = "/api/v1/agent/"
AUTH_PATH_PREFIX = "/api/v1/auth/"
METRICS_PATH = "/metrics"
#: The registry's token realm checks a host's registry credential itself (HTTP Basic).
REGISTRY_TOKEN_PATH = "/api/v1/registry/token"
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
access_log = logging.getLogger("remotegpu.access")


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "remotegpu_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "remotegpu_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


def make_request_middleware(metrics: HttpMetrics):
    @web.middleware
    async def request_middleware(request: web.Request, handler):
        rid = request.headers.get("X-Request-ID", "")
        if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = uuid.uuid4().hex
        request[REQUEST_ID] = rid
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-ID"] = rid
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-ID"] = rid
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = _route_label(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={"method": request.method, "path": request.path, "status": status,
                           "duration_ms": round(elapsed * 1000, 2), "remote": client_ip(request)},
                )
            request_id_var.reset(token)

    return request_middleware


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Resolve ``Authorization: Bearer`` to a principal. Routes decide whether one is required.

    The auth endpoints (login, register, refresh, logout) answer only this site's pages
    and non-browser clients: a request with a foreign ``Origin`` (browsers send one on
    every cross-origin POST) is refused before it is read, so another site cannot log
    a visitor in as someone else. Their JSON-only bodies (routing.py) refuse the
    cross-site forms of browsers that send no Origin.
    """
    if request.path.startswith(AUTH_PATH_PREFIX):
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not same_origin(request, origin):
            raise PermissionDenied("cross-site requests to the auth endpoints are refused", code="origin_mismatch")
    header = platform_authorization(request)
    # Agents carry their own token; /metrics checks its own (system.metrics: the scrape token or an admin's).
    if header and not request.path.startswith(AGENT_PATH_PREFIX) and request.path not in (METRICS_PATH, REGISTRY_TOKEN_PATH):
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        bearer = credentials.strip()
        if bearer.startswith(ENV_TOKEN_PREFIX):  # an environment's storage token (application/storage/env_tokens.py)
            return await _as_environment(request, handler, bearer)
        request[PRINCIPAL] = await request.app[CONTAINER].auth_service().authenticate(bearer)
    return await handler(request)


async def _as_environment(request: web.Request, handler, bearer: str):
    """A token the platform put into an environment: storage only, its workspace only."""
    from remotegpu.application.identity.auth import Principal
    from remotegpu.application.storage.env_tokens import current_scope, in_scope

    found = await request.app[CONTAINER].env_storage_tokens().authenticate(bearer)
    if found is None:
        raise Unauthenticated("environment token is invalid, or its environment no longer runs", code="invalid_token")
    if not in_scope(request.method, request.path):
        raise PermissionDenied("an environment's token reaches the storage API only", code="token_scope")
    user, scope = found
    request[PRINCIPAL] = Principal(user=user, via="environment", token_id=scope.env_id)
    reset = current_scope.set(scope)
    try:
        return await handler(request)
    finally:
        current_scope.reset(reset)
