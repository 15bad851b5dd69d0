"""The event types endpoints may subscribe to. Open: other contexts register theirs."""

from __future__ import annotations

import re

from remotegpu.domain.shared.errors import InvalidInput

#: Sent by "test-send"; always delivered, whatever the endpoint's filter.
TEST_EVENT = "webhook.test"

_REGISTRY: dict[str, str] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def register(event_type: str, description: str) -> str:
    if not _NAME.match(event_type):
        raise ValueError(f"bad event type name {event_type!r}")
    _REGISTRY[event_type] = description
    return event_type


def known() -> dict[str, str]:
    return dict(sorted(_REGISTRY.items()))


def check_filter(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(_REGISTRY))
    if unknown:
        raise InvalidInput(f"event_types: unknown event type(s) {', '.join(unknown)}", code="unknown_event_type",
                           details={"field": "event_types", "unknown": unknown, "known": sorted(_REGISTRY)})
    return sorted(set(event_types))


ENVIRONMENT_CREATED = register("environment.created", "An environment was created (queued for placement).")
ENVIRONMENT_RUNNING = register("environment.running", "An environment is running.")
ENVIRONMENT_STOPPED = register("environment.stopped", "An environment stopped (by a user, a timer, idleness or arrears).")
ENVIRONMENT_FAILED = register("environment.failed", "An environment failed.")
ENVIRONMENT_DELETED = register("environment.deleted", "An environment was deleted.")
