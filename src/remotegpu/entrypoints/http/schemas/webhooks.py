from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from remotegpu.domain.webhooks.models import DeliveryStatus
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict

#: Request and response bodies in the delivery log are cut to this many characters.
LOG_EXCERPT = 4096


class WebhookIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL of a public address; deliveries are POSTed to it")
    description: str = Field("", max_length=500)
    event_types: list[str] = Field(default_factory=list, max_length=100, description="[] = every event type")
    enabled: bool = True


class WebhookPatchIn(Strict):
    url: str | None = Field(None, min_length=1, max_length=2048)
    description: str | None = Field(None, max_length=500)
    event_types: list[str] | None = Field(None, max_length=100)
    enabled: bool | None = Field(None, description="true re-enables an endpoint disabled after failures (or a 410)")


class WebhookListQuery(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)


class WebhookOut(BaseModel):
    id: str
    workspace_id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(description="after a rotation: until then both signatures are sent")
    created_at: datetime
    updated_at: datetime


class WebhookWithSecretOut(WebhookOut):
    secret: str = Field(description="whsec_…: shown only now (creation, rotation); verify webhook-signature with it")


class EventTypeOut(BaseModel):
    type: str
    description: str


class DeliveryListQuery(PageQuery):
    pass


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    message_id: str = Field(description="the webhook-id header, the same on every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    last_attempt_at: datetime | None
    request_body: str = Field(description=f"what was sent (first {LOG_EXCERPT} characters)")
    response_status: int | None
    response_body: str = Field(description=f"what the endpoint answered (first {LOG_EXCERPT} characters)")
    error: str


class ReplayIn(Strict):
    since: datetime = Field(description="from this instant (inclusive; with a time zone)")
    until: datetime = Field(description="to this instant (exclusive)")
    only_failed: bool = Field(True, description="only messages never delivered; false: every message in the range")


class ReplayOut(BaseModel):
    queued: int = Field(description="messages sent again (same webhook-id), oldest first")
    skipped: int = Field(description="delivered already, or still being retried")
    truncated: bool = Field(description="the range holds more messages than one replay sends (10,000): replay again from the last one")
