"""Typed keys for state kept on the aiohttp app and request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from aiohttp import web

if TYPE_CHECKING:
    from remotegpu.application.identity.auth import Principal
    from remotegpu.entrypoints.containers import Container

CONTAINER: web.AppKey["Container"] = web.AppKey("container")
PRINCIPAL: web.RequestKey["Principal"] = web.RequestKey("principal")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")

#: (environment id, app name) → the absolute URL of that app's own host (``apps.py``).
APP_URL: web.AppKey[Callable[[str, str], str]] = web.AppKey("app_url")
