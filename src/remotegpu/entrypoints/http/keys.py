"""Typed keys for state kept on the aiohttp app and request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from remotegpu.application.identity.auth import Principal
    from remotegpu.entrypoints.containers import Container

CONTAINER: web.AppKey["Container"] = web.AppKey("container")
PRINCIPAL: web.RequestKey["Principal"] = web.RequestKey("principal")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
