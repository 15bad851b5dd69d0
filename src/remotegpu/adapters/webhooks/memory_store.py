"""Webhook endpoints and deliveries in memory (tests, the benchmark, ``persistence=memory``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from remotegpu.domain.webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint


class InMemoryWebhookStore:
    """Satisfies ``application.webhooks.ports.WebhookStore``; hands out copies, like a database."""

    def __init__(self) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}
        self.deliveries: dict[str, Delivery] = {}

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.endpoints[endpoint.id] = replace(endpoint, event_types=list(endpoint.event_types))

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        e = self.endpoints.get(endpoint_id)
        return replace(e, event_types=list(e.event_types)) if e else None

    async def list_endpoints(self, workspace_id: str) -> list[WebhookEndpoint]:
        found = [e for e in self.endpoints.values() if e.workspace_id == workspace_id]
        return [replace(e, event_types=list(e.event_types)) for e in sorted(found, key=lambda e: (e.created_at, e.id))]

    async def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        if endpoint.id in self.endpoints:
            await self.add_endpoint(endpoint)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)
        for d in [d for d in self.deliveries.values() if d.endpoint_id == endpoint_id]:
            del self.deliveries[d.id]

    async def mark_endpoint_succeeded(self, endpoint_id: str) -> None:
        if endpoint_id in self.endpoints:
            self.endpoints[endpoint_id].failing_since = None

    async def mark_endpoint_failed(self, endpoint_id: str, now: datetime) -> datetime | None:
        e = self.endpoints.get(endpoint_id)
        if e is None:
            return None
        e.failing_since = e.failing_since or now
        return e.failing_since

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: datetime) -> None:
        e = self.endpoints.get(endpoint_id)
        if e is not None:
            e.disable(reason, now)

    async def add_deliveries(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.deliveries[d.id] = replace(d)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        d = self.deliveries.get(delivery_id)
        return replace(d) if d else None

    async def update_delivery(self, delivery: Delivery) -> None:
        if delivery.id in self.deliveries:
            self.deliveries[delivery.id] = replace(delivery)

    async def update_deliveries(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            await self.update_delivery(d)

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        due = sorted(
            (d for d in self.deliveries.values()
             if d.status is DeliveryStatus.PENDING and d.next_attempt_at is not None and d.next_attempt_at <= now),
            key=lambda d: (d.next_attempt_at, d.id),
        )[:limit]
        for d in due:
            d.next_attempt_at = now + lease
        return [replace(d) for d in sorted(due, key=lambda d: (d.created_at, d.id))]  # as the SQL store

    async def purge_finished(self, before: datetime) -> int:
        old = [d.id for d in self.deliveries.values() if d.status is not DeliveryStatus.PENDING and d.created_at < before]
        for delivery_id in old:
            del self.deliveries[delivery_id]
        return len(old)

    async def list_deliveries(self, endpoint_id: str, limit: int, offset: int) -> tuple[list[Delivery], int]:
        mine = sorted((d for d in self.deliveries.values() if d.endpoint_id == endpoint_id),
                      key=lambda d: (d.created_at, d.id), reverse=True)
        return [replace(d) for d in mine[offset:offset + limit]], len(mine)

    async def deliveries_between(self, endpoint_id: str, since: datetime, until: datetime, limit: int) -> list[Delivery]:
        found = sorted((d for d in self.deliveries.values() if d.endpoint_id == endpoint_id and since <= d.created_at < until),
                       key=lambda d: (d.created_at, d.id))
        return [replace(d) for d in found[:limit]]
