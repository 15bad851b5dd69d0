"""Typed keys for state kept on the aiohttp app and request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from remotegpu.entrypoints.containers import Container

CONTAINER: web.AppKey["Container"] = web.AppKey("container")
# Request-scoped values are plain string keys on the request mapping.
PRINCIPAL = "remotegpu.principal"
REQUEST_ID = "remotegpu.request_id"
