"""Declarative routes: one decorator gives the aiohttp route, request parsing and the OpenAPI entry.

A handler receives a ``Call`` (request, principal, container, parsed path/query/body)
and returns a pydantic model (serialised with the route's status) or ``None`` (204).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import InvalidInput, Unauthenticated
from remotegpu.entrypoints.http.client_ip import client_ip
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL

if TYPE_CHECKING:
    from remotegpu.application.identity.auth import Principal
    from remotegpu.entrypoints.containers import Container

_PATH_PARAM = re.compile(r"{(\w+)}")

#: Every JSON body: at most this deep (objects/arrays inside each other) and this many
#: values in all (array items and object members, counted through every level). Strings
#: are bounded by the body size (app.MAX_BODY_BYTES). Deeper or bigger answers 422.
MAX_JSON_DEPTH = 32
MAX_JSON_ITEMS = 10_000
#: Agents report a whole host (every environment, GPU and port) and list what they
#: know in one body: their routes (authenticated by the agent token) may hold more.
AGENT_MAX_JSON_ITEMS = 200_000
_AGENT_PREFIX = "/api/v1/agent/"


@dataclass
class Call:
    request: web.Request
    body: Any = None
    query: Any = None

    @property
    def container(self) -> "Container":
        return self.request.app[CONTAINER]

    @property
    def principal(self) -> "Principal":
        principal = self.request.get(PRINCIPAL)
        if principal is None:
            raise Unauthenticated("authentication required")
        return principal

    @property
    def user(self) -> User:
        return self.principal.user

    @property
    def ip(self) -> str | None:
        """The client's address (behind trusted proxies: from X-Forwarded-For; see client_ip.py)."""
        return client_ip(self.request)

    def path(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[Call], Awaitable[BaseModel | None]]


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    auth: bool
    tags: list[str]
    summary: str
    errors: list[int] = field(default_factory=list)
    #: A bulk body (agents' metric batches: tens of thousands of rows): decoded with
    #: orjson and bounded by its model and the handler's own check of every row, not by
    #: the generic walk over every value (which cost more than the decoding itself).
    bulk: bool = False

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


class Api:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        auth: bool = True,
        tags: list[str] | None = None,
        errors: list[int] | None = None,
        bulk: bool = False,
    ) -> Callable[[Handler], Handler]:
        def decorate(fn: Handler) -> Handler:
            summary = (fn.__doc__ or fn.__name__.replace("_", " ")).strip().splitlines()[0]
            self.routes.append(
                Route(method, path, fn, body, query, response, status, auth, tags or [], summary, errors or [], bulk)
            )
            return fn

        return decorate

    def get(self, path: str, **kw: Any):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any):
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any):
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any):
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any):
        return self.route("DELETE", path, **kw)

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, _adapt(route), name=route.handler.__name__)


def _validation_error(exc: ValidationError, where: str) -> InvalidInput:
    problems = [
        {"loc": [where, *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
    ]
    first = problems[0]
    field_name = ".".join(first["loc"][1:]) or where
    return InvalidInput(f"{field_name}: {first['msg']}", code="validation_error", details={"errors": problems})


class UnsupportedMediaType(InvalidInput):
    """A body that is not declared JSON (422, as every other unusable body; every route
    with a body documents 422). Browsers send ``text/plain``, form and multipart bodies
    cross-site without asking (no CORS preflight): refusing them is what keeps a foreign
    page from posting to the API (e.g. logging a victim in as the attacker)."""

    code = "unsupported_media_type"


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/") and content_type.endswith("+json"))


async def _parse_body(request: web.Request, model: type[BaseModel], *, max_items: int = MAX_JSON_ITEMS,
                      bulk: bool = False) -> BaseModel:
    raw = await request.read()
    if not raw:
        raw = b"{}"
    elif not _is_json(request.content_type):
        raise UnsupportedMediaType(
            f"the request body must be JSON (Content-Type: application/json), not {request.content_type!r}",
            details={"content_type": request.content_type},
        )
    try:
        data = orjson.loads(raw) if bulk else json.loads(raw)
    except (ValueError, UnicodeDecodeError):  # orjson.JSONDecodeError is a ValueError (also past its depth of 1024)
        raise InvalidInput("request body is not valid JSON", code="invalid_json") from None
    except RecursionError:  # the decoder itself gave up: far deeper than MAX_JSON_DEPTH
        raise _too_deep() from None
    if not bulk:
        check_json_bounds(data, max_items=max_items)
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, "body") from None


def _too_deep() -> InvalidInput:
    return InvalidInput(f"request body is nested deeper than {MAX_JSON_DEPTH} levels", code="too_deep",
                        details={"max_depth": MAX_JSON_DEPTH})


def check_json_bounds(data: Any, *, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_JSON_ITEMS) -> None:
    """InvalidInput (422 ``too_deep`` / ``too_many_items``) when decoded JSON is nested
    deeper than ``max_depth`` or holds more than ``max_items`` values. Iterative, so a
    pathological body costs one pass and no recursion (pydantic would recurse on it)."""
    items = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise _too_deep()
        items += len(children)
        if items > max_items:
            raise InvalidInput(f"request body holds more than {max_items} values", code="too_many_items",
                               details={"max_items": max_items})
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _parse_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _validation_error(exc, "query") from None


def _adapt(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def aiohttp_handler(request: web.Request) -> web.StreamResponse:
        if route.auth and request.get(PRINCIPAL) is None:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        call = Call(request)
        if route.query is not None:
            call.query = _parse_query(request, route.query)
        if route.body is not None:
            max_items = AGENT_MAX_JSON_ITEMS if route.path.startswith(_AGENT_PREFIX) else MAX_JSON_ITEMS
            call.body = await _parse_body(request, route.body, max_items=max_items, bulk=route.bulk)
        result = await route.handler(call)
        if result is None:
            return web.Response(status=204)
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(
            body=result.model_dump_json().encode(), status=route.status, content_type="application/json"
        )

    aiohttp_handler.__name__ = route.handler.__name__
    return aiohttp_handler
