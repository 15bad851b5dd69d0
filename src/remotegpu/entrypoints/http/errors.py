"""The one place where exceptions become HTTP answers (ARCHITECTURE §5 error format)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from remotegpu.domain.shared.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("remotegpu.http")

STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (QuotaExceeded, 409),
    (InvalidInput, 422),
    (RateLimited, 429),
    (Unavailable, 503),
]

_HTTP_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited", 503: "unavailable",
}


def error_response(status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.Response(status=status, text=json.dumps(body, default=str), content_type="application/json", headers=headers)


def status_for(exc: DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except DomainError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": 'Bearer realm="remotegpu"'}
        return error_response(status_for(exc), exc.code, exc.message, exc.details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else "no such resource"
        return error_response(exc.status, code, message, headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow",)})
    except Exception:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error; quote the request id when reporting it")
