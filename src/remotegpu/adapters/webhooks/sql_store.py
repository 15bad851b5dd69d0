"""Webhook endpoints and deliveries in SQL (SQLite or PostgreSQL); secrets sealed at rest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.domain.webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint

_E, _D = t.webhook_endpoints, t.webhook_deliveries
_SECRET_CONTEXT = "webhook-secret:{}"  # + the endpoint's id: a sealed secret opens only in its own row


class SqlWebhookStore:
    """Satisfies ``application.webhooks.ports.WebhookStore``: each call one short transaction."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], sealer: Any):
        self._sessions = session_factory
        self._sealer = sealer

    # --- mapping ------------------------------------------------------------------------

    def _seal(self, secret: str, endpoint_id: str) -> str:
        return self._sealer.seal(secret.encode(), context=_SECRET_CONTEXT.format(endpoint_id)) if secret else ""

    def _open(self, sealed: str, endpoint_id: str) -> str:
        return self._sealer.open(sealed, context=_SECRET_CONTEXT.format(endpoint_id)).decode() if sealed else ""

    def _endpoint_row(self, e: WebhookEndpoint) -> dict[str, Any]:
        return dict(
            id=e.id, workspace_id=e.workspace_id, url=e.url, description=e.description,
            event_types=json.dumps(e.event_types), enabled=e.enabled, disabled_reason=e.disabled_reason[:200],
            secret_sealed=self._seal(e.secret, e.id), previous_secret_sealed=self._seal(e.previous_secret, e.id),
            previous_secret_expires_at=e.previous_secret_expires_at, failing_since=e.failing_since,
            created_by=e.created_by, created_at=e.created_at, updated_at=e.updated_at,
        )

    def _endpoint(self, r: Any) -> WebhookEndpoint:
        return WebhookEndpoint(
            id=r.id, workspace_id=r.workspace_id, url=r.url, secret=self._open(r.secret_sealed, r.id), created_by=r.created_by,
            created_at=r.created_at, updated_at=r.updated_at, description=r.description,
            event_types=json.loads(r.event_types), enabled=r.enabled, disabled_reason=r.disabled_reason,
            previous_secret=self._open(r.previous_secret_sealed, r.id), previous_secret_expires_at=r.previous_secret_expires_at,
            failing_since=r.failing_since,
        )

    @staticmethod
    def _delivery_row(d: Delivery) -> dict[str, Any]:
        return dict(
            id=d.id, endpoint_id=d.endpoint_id, workspace_id=d.workspace_id, message_id=d.message_id,
            event_type=d.event_type, body=d.body, status=d.status.value, attempts=d.attempts,
            next_attempt_at=d.next_attempt_at, created_at=d.created_at, last_attempt_at=d.last_attempt_at,
            response_status=d.response_status, response_body=d.response_body, error=d.error,
        )

    @staticmethod
    def _delivery(r: Any) -> Delivery:
        return Delivery(
            id=r.id, endpoint_id=r.endpoint_id, workspace_id=r.workspace_id, message_id=r.message_id,
            event_type=r.event_type, body=r.body, created_at=r.created_at, next_attempt_at=r.next_attempt_at,
            status=DeliveryStatus(r.status), attempts=r.attempts, last_attempt_at=r.last_attempt_at,
            response_status=r.response_status, response_body=r.response_body, error=r.error,
        )

    async def _write(self, *statements: Any) -> None:
        async with self._sessions() as s, s.begin():
            for statement in statements:
                await s.execute(statement)

    async def _write_many(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(statement, rows)  # executemany: one round of binds, not one giant statement

    async def _rows(self, query: Any) -> list[Any]:
        async with self._sessions() as s:
            return list((await s.execute(query)).all())

    # --- endpoints ----------------------------------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        await self._write(_E.insert().values(**self._endpoint_row(endpoint)))

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        rows = await self._rows(sa.select(_E).where(_E.c.id == endpoint_id))
        return self._endpoint(rows[0]) if rows else None

    async def list_endpoints(self, workspace_id: str) -> list[WebhookEndpoint]:
        rows = await self._rows(sa.select(_E).where(_E.c.workspace_id == workspace_id).order_by(_E.c.created_at, _E.c.id))
        return [self._endpoint(r) for r in rows]

    async def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        row = self._endpoint_row(endpoint)
        for key in ("id", "workspace_id", "created_by", "created_at"):
            row.pop(key)
        await self._write(_E.update().where(_E.c.id == endpoint.id).values(**row))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self._write(_D.delete().where(_D.c.endpoint_id == endpoint_id), _E.delete().where(_E.c.id == endpoint_id))

    async def mark_endpoint_succeeded(self, endpoint_id: str) -> None:
        await self._write(_E.update().where(_E.c.id == endpoint_id).values(failing_since=None))

    async def mark_endpoint_failed(self, endpoint_id: str, now: datetime) -> datetime | None:
        async with self._sessions() as s, s.begin():
            await s.execute(_E.update().where(_E.c.id == endpoint_id, _E.c.failing_since.is_(None)).values(failing_since=now))
            return (await s.execute(sa.select(_E.c.failing_since).where(_E.c.id == endpoint_id))).scalar_one_or_none()

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: datetime) -> None:
        await self._write(_E.update().where(_E.c.id == endpoint_id).values(enabled=False, disabled_reason=reason[:200], updated_at=now))

    # --- deliveries ---------------------------------------------------------------------

    async def add_deliveries(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            await self._write_many(_D.insert(), [self._delivery_row(d) for d in deliveries])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self._rows(sa.select(_D).where(_D.c.id == delivery_id))
        return self._delivery(rows[0]) if rows else None

    async def update_delivery(self, delivery: Delivery) -> None:
        row = self._delivery_row(delivery)
        for key in ("id", "endpoint_id", "workspace_id", "message_id", "event_type", "body", "created_at"):
            row.pop(key)
        await self._write(_D.update().where(_D.c.id == delivery.id).values(**row))

    async def update_deliveries(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        rows = []
        for d in deliveries:
            row = self._delivery_row(d)
            row["_id"] = row.pop("id")
            for key in ("endpoint_id", "workspace_id", "message_id", "event_type", "body", "created_at"):
                row.pop(key)
            rows.append(row)
        statement = _D.update().where(_D.c.id == sa.bindparam("_id")).values(
            {key: sa.bindparam(key) for key in rows[0] if key != "_id"})
        async with self._sessions() as s, s.begin():
            await s.execute(statement, rows)  # one transaction, executemany

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        # One statement, so the choice and the lease are atomic: SQLite runs it alone;
        # PostgreSQL skips rows another dispatcher's statement has locked.
        async with self._sessions() as s, s.begin():
            due = (sa.select(_D.c.id).where(_D.c.status == DeliveryStatus.PENDING.value, _D.c.next_attempt_at <= now)
                   .order_by(_D.c.next_attempt_at).limit(limit))
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = (await s.execute(_D.update().where(_D.c.id.in_(due.scalar_subquery()))
                                    .values(next_attempt_at=now + lease).returning(*_D.c))).all()
        return sorted((self._delivery(r) for r in rows), key=lambda d: (d.created_at, d.id))

    async def purge_finished(self, before: datetime) -> int:
        async with self._sessions() as s, s.begin():
            result = await s.execute(_D.delete().where(_D.c.status != DeliveryStatus.PENDING.value, _D.c.created_at < before))
        return result.rowcount or 0

    async def list_deliveries(self, endpoint_id: str, limit: int, offset: int) -> tuple[list[Delivery], int]:
        async with self._sessions() as s:
            total = (await s.execute(sa.select(sa.func.count()).select_from(_D).where(_D.c.endpoint_id == endpoint_id))).scalar_one()
            rows = (await s.execute(sa.select(_D).where(_D.c.endpoint_id == endpoint_id)
                                    .order_by(_D.c.created_at.desc(), _D.c.id.desc()).limit(limit).offset(offset))).all()
        return [self._delivery(r) for r in rows], total

    async def deliveries_between(self, endpoint_id: str, since: datetime, until: datetime, limit: int) -> list[Delivery]:
        rows = await self._rows(sa.select(_D).where(_D.c.endpoint_id == endpoint_id, _D.c.created_at >= since, _D.c.created_at < until)
                                .order_by(_D.c.created_at, _D.c.id).limit(limit))
        return [self._delivery(r) for r in rows]
