"""Webhook test helpers: a scripted local receiver, and seeding an endpoint without the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiohttp import web

from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.webhooks import signing
from remotegpu.domain.webhooks.models import Delivery, WebhookEndpoint


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request and answers from a script:
    each answer is (status, headers); when the script runs out it answers 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        status, headers = self.script.pop(0) if self.script else (200, {})
        if status in (301, 302, 307, 308):
            raise web.HTTPFound(headers["Location"]) if status == 302 else web.HTTPTemporaryRedirect(headers["Location"])
        return web.Response(status=status, headers=headers, text=f"answer {status}")

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def seed_webhook(container, workspace_id: str, created_by: str, url: str = "http://127.0.0.1:9/unreachable") -> tuple[str, str]:
    """An endpoint (stored directly, so its URL may be one the API would refuse) and one
    logged delivery; returns (endpoint id, delivery id)."""
    now = datetime.now(timezone.utc)
    endpoint = WebhookEndpoint(new_id(), workspace_id, url, signing.new_secret(), created_by, now, now)
    delivery = Delivery(new_id(), endpoint.id, workspace_id, "msg_seeded", "webhook.test", "{}", now, None)
    store = container.webhook_store()
    await store.add_endpoint(endpoint)
    await store.add_deliveries([delivery])
    return endpoint.id, delivery.id
