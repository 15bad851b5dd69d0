from __future__ import annotations

from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.webhooks import events
from remotegpu.domain.webhooks.models import Delivery, WebhookEndpoint
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.webhooks import (
    LOG_EXCERPT,
    DeliveryListQuery,
    DeliveryOut,
    EventTypeOut,
    ReplayIn,
    ReplayOut,
    WebhookIn,
    WebhookListQuery,
    WebhookOut,
    WebhookPatchIn,
    WebhookWithSecretOut,
)

TAGS = ["webhooks"]
ONE = "/api/v1/webhooks/{webhook_id}"


def _fields(e: WebhookEndpoint) -> dict:
    return dict(
        id=e.id, workspace_id=e.workspace_id, url=e.url, description=e.description, event_types=e.event_types,
        enabled=e.enabled, disabled_reason=e.disabled_reason, failing_since=e.failing_since,
        previous_secret_expires_at=e.previous_secret_expires_at, created_at=e.created_at, updated_at=e.updated_at,
    )


def _out(e: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(**_fields(e))


def _with_secret(e: WebhookEndpoint) -> WebhookWithSecretOut:
    return WebhookWithSecretOut(**_fields(e), secret=e.secret)


def _delivery(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, endpoint_id=d.endpoint_id, message_id=d.message_id, event_type=d.event_type, status=d.status,
        attempts=d.attempts, next_attempt_at=d.next_attempt_at, created_at=d.created_at, last_attempt_at=d.last_attempt_at,
        request_body=d.body[:LOG_EXCERPT], response_status=d.response_status, response_body=d.response_body[:LOG_EXCERPT],
        error=d.error[:LOG_EXCERPT],
    )


@api.get("/api/v1/webhooks/event-types", response=Page[EventTypeOut], tags=TAGS, errors=[401])
async def list_webhook_event_types(call: Call) -> Page[EventTypeOut]:
    """Event types an endpoint may subscribe to."""
    items = [EventTypeOut(type=t, description=d) for t, d in events.known().items()]
    return Page[EventTypeOut](items=items, total=len(items))


@api.post("/api/v1/webhooks", body=WebhookIn, response=WebhookWithSecretOut, status=201, tags=TAGS, errors=[401, 403, 404, 422])
async def create_webhook(call: Call) -> WebhookWithSecretOut:
    """Register an endpoint (workspace admins); the answer holds its secret, shown this once."""
    b: WebhookIn = call.body
    endpoint = await call.container.webhook_service().create(
        call.user, b.workspace_id, b.url, description=b.description, event_types=b.event_types, enabled=b.enabled,
    )
    return _with_secret(endpoint)


@api.get("/api/v1/webhooks", query=WebhookListQuery, response=Page[WebhookOut], tags=TAGS, errors=[401, 403, 404, 422])
async def list_webhooks(call: Call) -> Page[WebhookOut]:
    """A workspace's endpoints (workspace admins)."""
    endpoints = await call.container.webhook_service().list(call.user, call.query.workspace_id)
    return Page[WebhookOut](items=[_out(e) for e in endpoints], total=len(endpoints))


@api.get(ONE, response=WebhookOut, tags=TAGS, errors=[401, 403, 404])
async def get_webhook(call: Call) -> WebhookOut:
    """One endpoint (workspace admins)."""
    return _out(await call.container.webhook_service().get(call.user, call.path("webhook_id")))


@api.patch(ONE, body=WebhookPatchIn, response=WebhookOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_webhook(call: Call) -> WebhookOut:
    """Change the URL, description, event types or enabled flag (workspace admins)."""
    b: WebhookPatchIn = call.body
    endpoint = await call.container.webhook_service().update(
        call.user, call.path("webhook_id"), url=b.url, description=b.description, event_types=b.event_types, enabled=b.enabled,
    )
    return _out(endpoint)


@api.delete(ONE, status=204, tags=TAGS, errors=[401, 403, 404])
async def delete_webhook(call: Call) -> None:
    """Delete an endpoint and its delivery log (workspace admins)."""
    await call.container.webhook_service().delete(call.user, call.path("webhook_id"))


@api.post(ONE + "/rotate-secret", response=WebhookWithSecretOut, tags=TAGS, errors=[401, 403, 404])
async def rotate_webhook_secret(call: Call) -> WebhookWithSecretOut:
    """A new secret, shown this once; the old one keeps signing (a second signature) for 24 hours."""
    return _with_secret(await call.container.webhook_service().rotate_secret(call.user, call.path("webhook_id")))


@api.post(ONE + "/test", response=DeliveryOut, tags=TAGS, errors=[401, 403, 404])
async def test_webhook(call: Call) -> DeliveryOut:
    """Send a webhook.test message now and answer how it went (not retried)."""
    return _delivery(await call.container.webhook_service().send_test(call.user, call.path("webhook_id")))


@api.get(ONE + "/deliveries", query=DeliveryListQuery, response=Page[DeliveryOut], tags=TAGS, errors=[401, 403, 404, 422])
async def list_webhook_deliveries(call: Call) -> Page[DeliveryOut]:
    """The endpoint's delivery log, newest first (request and response cut to 4 KiB)."""
    q: DeliveryListQuery = call.query
    items, total = await call.container.webhook_service().deliveries(call.user, call.path("webhook_id"), limit=q.limit, offset=q.offset)
    return Page[DeliveryOut](items=[_delivery(d) for d in items], total=total)


@api.post(ONE + "/deliveries/{delivery_id}/redeliver", response=DeliveryOut, status=202, tags=TAGS, errors=[401, 403, 404])
async def redeliver_webhook(call: Call) -> DeliveryOut:
    """Send a logged message again (same webhook-id), now."""
    return _delivery(await call.container.webhook_service().redeliver(call.user, call.path("webhook_id"), call.path("delivery_id")))


@api.post(ONE + "/replay", body=ReplayIn, response=ReplayOut, status=202, tags=TAGS, errors=[401, 403, 404, 422])
async def replay_webhook(call: Call) -> ReplayOut:
    """Send again the logged messages of a time range (the log keeps 30 days), each once, same webhook-id."""
    b: ReplayIn = call.body
    for name, value in (("since", b.since), ("until", b.until)):
        if value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2026-11-30T08:00:00Z)", details={"field": name})
    result = await call.container.webhook_service().replay(call.user, call.path("webhook_id"), b.since, b.until,
                                                           only_failed=b.only_failed)
    return ReplayOut(queued=result.queued, skipped=result.skipped, truncated=result.truncated)
