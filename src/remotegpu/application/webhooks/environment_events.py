"""Environment lifecycle → webhook events: the one place they are subscribed.

``EnvironmentEventsUnitOfWork`` wraps the unit of work like ``ChangeTrackingUnitOfWork``
does: it notes the status transitions (``Environment.pending_events``) of every
environment a use case saves and, after the commit, hands them to a publisher. A
rolled-back transition is never announced; the environment service knows nothing of it.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from remotegpu.application.shared.environment_tap import TappedEnvironments
from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.environments.models import Environment, EnvironmentEvent, EnvStatus
from remotegpu.domain.webhooks import events

log = logging.getLogger(__name__)

#: Which transitions are webhook events (a move to "queued" is one only at creation).
_EVENT_OF = {
    EnvStatus.RUNNING: events.ENVIRONMENT_RUNNING,
    EnvStatus.STOPPED: events.ENVIRONMENT_STOPPED,
    EnvStatus.FAILED: events.ENVIRONMENT_FAILED,
    EnvStatus.DELETED: events.ENVIRONMENT_DELETED,
}

Publish = Callable[[str, str, dict[str, Any]], Awaitable[int]]  # (workspace_id, event_type, data)


def event_type_of(event: EnvironmentEvent) -> str | None:
    if event.from_status is None and event.to_status is EnvStatus.QUEUED:
        return events.ENVIRONMENT_CREATED
    return _EVENT_OF.get(event.to_status)


def event_data(env: Environment, event: EnvironmentEvent) -> dict[str, Any]:
    return {
        "environment_id": env.id, "workspace_id": env.workspace_id, "name": env.name,
        "status": event.to_status.value, "previous_status": event.from_status.value if event.from_status else None,
        "reason": event.reason, "at": event.at.isoformat().replace("+00:00", "Z"),
    }


def _note_environment(noted: list[tuple[str, str, dict[str, Any]]], env: Environment) -> None:
    for event in env.pending_events:
        event_type = event_type_of(event)
        if event_type is not None:
            noted.append((env.workspace_id, event_type, event_data(env, event)))


class EnvironmentEventsUnitOfWork:
    """A ``UnitOfWork`` that publishes environment lifecycle events after commit."""

    def __init__(self, inner: UnitOfWork, publish: Publish):
        self._inner = inner
        self._publish = publish
        self._noted: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "EnvironmentEventsUnitOfWork":
        await self._inner.__aenter__()
        self._noted = []
        self.environments = TappedEnvironments(self._inner.environments, lambda env: _note_environment(self._noted, env))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._noted.clear()
        await self._inner.__aexit__(*exc)

    async def rollback(self) -> None:
        self._noted.clear()
        await self._inner.rollback()

    async def commit(self) -> None:
        await self._inner.commit()
        noted, self._noted[:] = list(self._noted), []
        for workspace_id, event_type, data in noted:
            try:
                await self._publish(workspace_id, event_type, data)
            except Exception:  # noqa: BLE001 - the change is committed; a lost webhook must not fail the use case
                log.exception("queueing webhook %s for workspace %s failed", event_type, workspace_id)
