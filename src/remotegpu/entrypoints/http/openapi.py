"""OpenAPI 3.1 generated from the route table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from remotegpu import __version__
from remotegpu.entrypoints.http.routing import Route
from remotegpu.entrypoints.http.schemas.common import ErrorResponse

REF = "#/components/schemas/{model}"
_REASONS = {
    400: "Bad request", 401: "Not authenticated", 403: "Not allowed", 404: "Not found (or not yours)",
    409: "Conflict or wrong state", 422: "Invalid input", 429: "Rate limited",
}


def _models(routes: list[Route]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = [ErrorResponse]
    for r in routes:
        for m in (r.body, r.query, r.response):
            if isinstance(m, type) and issubclass(m, BaseModel) and m not in seen:
                seen.append(m)
    return seen


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    params = []
    for name, prop in schema.get("properties", {}).items():
        params.append({"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop})
    return params


def build_spec(routes: list[Route], *, server_url: str | None = None) -> dict[str, Any]:
    models = _models(routes)
    keys = [(m, "validation" if any(r.body is m for r in routes) else "serialization") for m in models]
    refs, defs = models_json_schema(keys, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "tags": r.tags,
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
                for p in r.path_params
            ],
            "responses": {},
        }
        if r.query is not None:
            op["parameters"] += _query_parameters(r.query)
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(r.body, "validation")]}},
            }
        if r.response is not None:
            op["responses"][str(r.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(r.response, "serialization")]}},
            }
        elif (raw := getattr(r.handler, "content_type", None)) is not None:  # e.g. a CSV download
            op["responses"][str(r.status)] = {"description": "OK", "content": {raw: {"schema": {"type": "string"}}}}
        else:
            op["responses"][str(r.status)] = {"description": "Done"}
        error_codes = set(r.errors) | ({401} if r.auth else set()) | ({422} if (r.body or r.query) else set())
        for code in sorted(error_codes):
            op["responses"][str(code)] = {
                "description": _REASONS.get(code, "Error"),
                "content": {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}},
            }
        if r.auth:
            op["security"] = [{"bearerAuth": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "RemoteGPU API",
            "version": __version__,
            "description": "Self-hosted GPU cloud. Errors: {\"error\": {\"code\", \"message\", \"details\"}}. "
            "Lists: ?limit=&offset= → {items, total}.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "access token or personal API token (rgp_…)"}},
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec
