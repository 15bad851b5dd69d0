"""What the webhooks use cases need from the outside: a store and an HTTP sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from remotegpu.domain.webhooks.models import Delivery, WebhookEndpoint


class WebhookStore(Protocol):
    """Endpoints and deliveries. Each call is its own short transaction: deliveries are
    written and claimed by the dispatcher independently of any use case's unit of work."""

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None: ...

    async def list_endpoints(self, workspace_id: str) -> list[WebhookEndpoint]: ...

    async def update_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Also deletes its deliveries."""
        ...

    async def mark_endpoint_succeeded(self, endpoint_id: str) -> None:
        """Clear ``failing_since`` (only that column: a concurrent edit of the endpoint stays)."""
        ...

    async def mark_endpoint_failed(self, endpoint_id: str, now: datetime) -> datetime | None:
        """Set ``failing_since`` unless already set; return it (None: the endpoint is gone)."""
        ...

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: datetime) -> None: ...

    async def add_deliveries(self, deliveries: list[Delivery]) -> None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def update_delivery(self, delivery: Delivery) -> None: ...

    async def update_deliveries(self, deliveries: list[Delivery]) -> None:
        """Several at once, in one transaction (the dispatcher's outcomes of a round)."""
        ...

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        """Pending deliveries due by ``now``, oldest first; each is pushed to ``now + lease``
        so that no other dispatcher takes it meanwhile (and a crashed one's work comes back)."""
        ...

    async def purge_finished(self, before: datetime) -> int:
        """Delete succeeded and failed deliveries created before ``before``; returns how many."""
        ...

    async def list_deliveries(self, endpoint_id: str, limit: int, offset: int) -> tuple[list[Delivery], int]:
        """Newest first, and the total."""
        ...

    async def deliveries_between(self, endpoint_id: str, since: datetime, until: datetime, limit: int) -> list[Delivery]:
        """The endpoint's deliveries created in [since, until), oldest first (at most ``limit``)."""
        ...


@dataclass(frozen=True)
class SendResult:
    status: int | None  # None: no HTTP answer (refused, unreachable, timeout)
    body: str = ""  # the response body, truncated
    retry_after: timedelta | None = None
    error: str = ""
    refused: bool = False  # the address policy refused the destination

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender(Protocol):
    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        """One POST; never raises for network trouble or a refusal (the result says)."""
        ...
