"""Webhook endpoints (workspace admins) and their deliveries: fan-out, retries, the log."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.webhooks.ports import SendResult, WebhookSender, WebhookStore
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import InvalidInput, NotFound
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.webhooks import events, notices, signing
from remotegpu.domain.webhooks.addresses import AddressPolicy, parse_url
from remotegpu.domain.webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint
from remotegpu.domain.webhooks.schedule import next_delay
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 500
#: The delivery log keeps finished deliveries this long.
LOG_RETENTION = timedelta(days=30)
MAX_ENDPOINTS_PER_WORKSPACE = 50
#: Messages one replay sends at most (ask again from where it stopped for more).
MAX_REPLAY = 10_000


@dataclass(frozen=True)
class ReplayResult:
    queued: int
    skipped: int  # delivered already (only_failed), or still being retried
    truncated: bool  # the range held more than MAX_REPLAY messages


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def event_body(event_type: str, data: dict[str, Any], at: datetime) -> str:
    return json.dumps({"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
                      separators=(",", ":"), sort_keys=True, default=str)


@dataclass
class WebhookService:
    uow: UnitOfWorkFactory  # workspace membership (who may manage endpoints)
    store: WebhookStore
    sender: WebhookSender
    clock: Clock
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    #: The notifications dispatcher (``dispatch(messages)``): tells workspace admins of a disabled endpoint.
    notifier: Any = None
    concurrency: int = 200  # attempts in flight at once, per process
    batch: int = 500  # deliveries claimed per round
    lease: timedelta = timedelta(seconds=60)  # > the sender's timeout: a claimed delivery is not re-sent meanwhile
    _wake: asyncio.Event | None = field(default=None, init=False, repr=False)

    # --- endpoints --------------------------------------------------------------------

    async def _authorize(self, actor: User, workspace_id: str) -> None:
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.ADMIN)

    async def _endpoint(self, actor: User, endpoint_id: str) -> WebhookEndpoint:
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound("webhook endpoint not found")
        try:
            await self._authorize(actor, endpoint.workspace_id)
        except NotFound:
            raise NotFound("webhook endpoint not found") from None
        return endpoint

    def _check_url(self, url: str) -> str:
        parsed = parse_url(url)
        if parsed.literal is not None:
            self.addresses.check(parsed.literal, parsed.host)
        return parsed.url

    @staticmethod
    def _check_description(description: str) -> str:
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters", details={"field": "description"})
        return description

    async def create(self, actor: User, workspace_id: str, url: str, *, description: str = "",
                     event_types: list[str] | None = None, enabled: bool = True) -> WebhookEndpoint:
        await self._authorize(actor, workspace_id)
        if len(await self.store.list_endpoints(workspace_id)) >= MAX_ENDPOINTS_PER_WORKSPACE:
            raise InvalidInput(f"a workspace has at most {MAX_ENDPOINTS_PER_WORKSPACE} webhook endpoints",
                               code="too_many_endpoints")
        now = self.clock.now()
        endpoint = WebhookEndpoint(
            id=new_id(), workspace_id=workspace_id, url=self._check_url(url), secret=signing.new_secret(),
            created_by=actor.id, created_at=now, updated_at=now, description=self._check_description(description),
            event_types=events.check_filter(event_types or []), enabled=enabled,
        )
        await self.store.add_endpoint(endpoint)
        return endpoint

    async def list(self, actor: User, workspace_id: str) -> list[WebhookEndpoint]:
        await self._authorize(actor, workspace_id)
        return await self.store.list_endpoints(workspace_id)

    async def get(self, actor: User, endpoint_id: str) -> WebhookEndpoint:
        return await self._endpoint(actor, endpoint_id)

    async def update(self, actor: User, endpoint_id: str, *, url: str | None = None, description: str | None = None,
                     event_types: list[str] | None = None, enabled: bool | None = None) -> WebhookEndpoint:
        endpoint = await self._endpoint(actor, endpoint_id)
        if url is not None:
            endpoint.url = self._check_url(url)
        if description is not None:
            endpoint.description = self._check_description(description)
        if event_types is not None:
            endpoint.event_types = events.check_filter(event_types)
        if enabled is not None:
            if enabled and not endpoint.enabled:  # re-enabled: its failure streak starts over
                endpoint.disabled_reason, endpoint.failing_since = "", None
            endpoint.enabled = enabled
        endpoint.updated_at = self.clock.now()
        await self.store.update_endpoint(endpoint)
        return endpoint

    async def delete(self, actor: User, endpoint_id: str) -> None:
        endpoint = await self._endpoint(actor, endpoint_id)
        await self.store.delete_endpoint(endpoint.id)

    async def rotate_secret(self, actor: User, endpoint_id: str) -> WebhookEndpoint:
        """A new secret; the old one keeps signing (a second signature) for 24 hours."""
        endpoint = await self._endpoint(actor, endpoint_id)
        endpoint.rotate(signing.new_secret(), self.clock.now())
        await self.store.update_endpoint(endpoint)
        return endpoint

    # --- the delivery log -------------------------------------------------------------

    async def deliveries(self, actor: User, endpoint_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Delivery], int]:
        endpoint = await self._endpoint(actor, endpoint_id)
        return await self.store.list_deliveries(endpoint.id, limit, offset)

    async def redeliver(self, actor: User, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send the same message again (same webhook-id, so the receiver can tell), now."""
        endpoint = await self._endpoint(actor, endpoint_id)
        original = await self.store.get_delivery(delivery_id)
        if original is None or original.endpoint_id != endpoint.id:
            raise NotFound("delivery not found")
        now = self.clock.now()
        again = Delivery(new_id(), endpoint.id, endpoint.workspace_id, original.message_id, original.event_type,
                         original.body, created_at=now, next_attempt_at=now)
        await self.store.add_deliveries([again])
        self.wake()
        return again

    async def replay(self, actor: User, endpoint_id: str, since: datetime, until: datetime, *,
                     only_failed: bool = True) -> "ReplayResult":
        """Send again every message the log holds for this endpoint from ``since`` to ``until``
        (each once, same webhook-id, oldest first); ``only_failed``: those never delivered."""
        endpoint = await self._endpoint(actor, endpoint_id)
        if until <= since:
            raise InvalidInput("until must be after since", details={"field": "until"})
        logged = await self.store.deliveries_between(endpoint.id, since, until, MAX_REPLAY * 4 + 1)
        delivered = {d.message_id for d in logged if d.status is DeliveryStatus.SUCCEEDED}
        firsts: dict[str, Delivery] = {}
        for d in logged:
            if d.event_type != events.TEST_EVENT:
                firsts.setdefault(d.message_id, d)
        chosen = [d for d in firsts.values() if not (only_failed and d.message_id in delivered)]
        truncated = len(chosen) > MAX_REPLAY or len(logged) > MAX_REPLAY * 4
        chosen = chosen[:MAX_REPLAY]
        pending = {d.message_id for d in logged if d.status is DeliveryStatus.PENDING}
        now = self.clock.now()
        again = [Delivery(new_id(), endpoint.id, endpoint.workspace_id, d.message_id, d.event_type, d.body, created_at=now,
                          next_attempt_at=now) for d in chosen if d.message_id not in pending]  # still retrying: not twice
        await self.store.add_deliveries(again)
        self.wake()
        return ReplayResult(queued=len(again), skipped=len(firsts) - len(again), truncated=truncated)

    async def send_test(self, actor: User, endpoint_id: str) -> Delivery:
        """One ``webhook.test`` message, attempted right away (once: a test is not retried)."""
        endpoint = await self._endpoint(actor, endpoint_id)
        now = self.clock.now()
        body = event_body(events.TEST_EVENT, {"endpoint_id": endpoint.id, "workspace_id": endpoint.workspace_id}, now)
        delivery = Delivery(new_id(), endpoint.id, endpoint.workspace_id, new_message_id(), events.TEST_EVENT, body,
                            created_at=now, next_attempt_at=None)
        await self.store.add_deliveries([delivery])
        await self._attempt(delivery, endpoint)
        return delivery

    # --- fan-out and dispatch ---------------------------------------------------------

    async def publish(self, workspace_id: str, event_type: str, data: dict[str, Any]) -> int:
        """One delivery per enabled endpoint of the workspace that wants ``event_type``."""
        now = self.clock.now()
        body = event_body(event_type, data, now)
        deliveries = [
            Delivery(new_id(), e.id, workspace_id, new_message_id(), event_type, body, created_at=now, next_attempt_at=now)
            for e in await self.store.list_endpoints(workspace_id) if e.wants(event_type)
        ]
        if deliveries:
            await self.store.add_deliveries(deliveries)
            self.wake()
        return len(deliveries)

    async def purge_log(self) -> int:
        """Forget finished deliveries older than the retention (pending ones stay, whatever their age)."""
        return await self.store.purge_finished(self.clock.now() - LOG_RETENTION)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or sooner when something was published."""
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def dispatch_due(self) -> int:
        """Attempt every delivery due now; returns how many were attempted."""
        total = 0
        semaphore = asyncio.Semaphore(self.concurrency)
        endpoints: dict[str, WebhookEndpoint | None] = {}

        loading: dict[str, asyncio.Task] = {}

        async def endpoint_of(endpoint_id: str) -> WebhookEndpoint | None:
            if endpoint_id not in endpoints:
                if endpoint_id not in loading:  # one lookup per endpoint and round, however many deliveries wait
                    loading[endpoint_id] = asyncio.ensure_future(self.store.get_endpoint(endpoint_id))
                endpoints[endpoint_id] = await loading[endpoint_id]
            return endpoints[endpoint_id]

        async def one(delivery: Delivery, done: list[Delivery]) -> None:
            async with semaphore:
                try:
                    await self._attempt(delivery, await endpoint_of(delivery.endpoint_id), save=False)
                    done.append(delivery)
                except Exception:  # noqa: BLE001 - one bad delivery must not stop the others; its lease brings it back
                    log.exception("webhook delivery %s failed unexpectedly", delivery.id)

        while True:
            claimed = await self.store.claim_due(self.clock.now(), self.batch, self.lease)
            if not claimed:
                return total
            done: list[Delivery] = []
            await asyncio.gather(*(one(d, done) for d in claimed))
            # Outcomes of the round in one transaction. A crash before it re-sends these after
            # the lease: at least once, with the same webhook-id, as the spec expects receivers to handle.
            await self.store.update_deliveries(done)
            total += len(claimed)
            if len(claimed) < self.batch:
                return total

    async def _attempt(self, delivery: Delivery, endpoint: WebhookEndpoint | None, *, save: bool = True) -> None:
        """One attempt; the delivery's new state is written (``save``) or left to the caller."""
        is_test = delivery.event_type == events.TEST_EVENT
        now = self.clock.now()
        if endpoint is None or (not endpoint.enabled and not is_test):
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            delivery.error = "endpoint deleted" if endpoint is None else f"endpoint disabled: {endpoint.disabled_reason}"
            if save:
                await self.store.update_delivery(delivery)
            return
        headers = signing.headers(endpoint.signing_secrets(now), delivery.message_id, int(now.timestamp()), delivery.body)
        result = await self.sender.send(endpoint.url, headers, delivery.body.encode())
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.response_status, delivery.response_body, delivery.error = result.status, result.body, result.error
        if result.ok:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, None
            if not is_test and endpoint.failing_since is not None:
                await self.store.mark_endpoint_succeeded(endpoint.id)
                endpoint.failing_since = None
        elif is_test:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            await self._failed(delivery, endpoint, result, now)
        if save:
            await self.store.update_delivery(delivery)

    async def _failed(self, delivery: Delivery, endpoint: WebhookEndpoint, result: SendResult, now: datetime) -> None:
        if result.status == 410:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            await self._disable(endpoint, "the endpoint answered 410 Gone", now)
            return
        retry_after = result.retry_after if result.status in (429, 503) else None
        delay = next_delay(delivery.attempts, retry_after)
        if delay is None:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delivery.next_attempt_at = now + delay
        endpoint.failing_since = await self.store.mark_endpoint_failed(endpoint.id, now)
        if endpoint.enabled and endpoint.record_failure(now):
            await self._disable(endpoint, "failing for 5 days", now)

    async def _disable(self, endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
        endpoint.disable(reason, now)
        await self.store.disable_endpoint(endpoint.id, reason, now)
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
        if self.notifier is not None:  # the workspace's owners and admins hear of it (in-app, email)
            message = notices.endpoint_disabled(endpoint.workspace_id, endpoint.id, endpoint.url, reason, now)
            try:
                await self.notifier.dispatch([message])
            except Exception:  # noqa: BLE001 - the endpoint is disabled either way
                log.exception("telling the admins of workspace %s that a webhook endpoint was disabled failed", endpoint.workspace_id)
