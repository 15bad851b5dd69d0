"""Webhook endpoints (where a workspace wants events) and deliveries (one event to one endpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

#: How long the secret replaced by a rotation still signs deliveries (both signatures are sent).
ROTATION_OVERLAP = timedelta(hours=24)
#: An endpoint failing without a single success for this long is disabled.
DISABLE_AFTER_FAILING = timedelta(days=5)


class DeliveryStatus(str, Enum):
    PENDING = "pending"  # waiting for its next attempt
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # gave up: attempts exhausted, 410, endpoint disabled or deleted


@dataclass
class WebhookEndpoint:
    id: str
    workspace_id: str
    url: str
    secret: str  # "whsec_" + base64; shown to the user once (creation, rotation)
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    event_types: list[str] = field(default_factory=list)  # empty: every event type
    enabled: bool = True
    disabled_reason: str = ""
    previous_secret: str = field(default="", repr=False)
    previous_secret_expires_at: datetime | None = None
    failing_since: datetime | None = None  # first failure after the last success

    def __repr__(self) -> str:  # never the secrets
        return f"WebhookEndpoint(id={self.id!r}, workspace_id={self.workspace_id!r}, url={self.url!r})"

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one while its overlap lasts."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and now < self.previous_secret_expires_at:
            secrets.append(self.previous_secret)
        return secrets

    def rotate(self, new_secret: str, now: datetime) -> None:
        self.previous_secret, self.previous_secret_expires_at = self.secret, now + ROTATION_OVERLAP
        self.secret = new_secret
        self.updated_at = now

    def disable(self, reason: str, now: datetime) -> None:
        self.enabled, self.disabled_reason, self.updated_at = False, reason, now

    def record_success(self) -> None:
        self.failing_since = None

    def record_failure(self, now: datetime) -> bool:
        """Note a failed attempt; True when the endpoint has failed long enough to be disabled."""
        if self.failing_since is None:
            self.failing_since = now
        return now - self.failing_since >= DISABLE_AFTER_FAILING


@dataclass
class Delivery:
    id: str
    endpoint_id: str
    workspace_id: str
    message_id: str  # the webhook-id header: the same on every attempt and redelivery
    event_type: str
    body: str  # the exact JSON that is signed and sent
    created_at: datetime
    next_attempt_at: datetime | None
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_attempt_at: datetime | None = None
    response_status: int | None = None
    response_body: str = ""  # truncated
    error: str = ""  # why the last attempt failed (refused address, timeout, non-2xx...)
