"""Seeing an environment's new events as a use case writes them.

Several contexts act on environment lifecycle events after their transaction commits
(notifications, webhooks). Each wraps the unit of work's environment repository with a
``TappedEnvironments``, which shows every environment written to ``tap`` *before* the
repository stores its ``pending_events`` (and empties the list).
"""

from __future__ import annotations

from typing import Any, Callable

from remotegpu.domain.environments.models import Environment


class TappedEnvironments:
    """An ``EnvironmentRepository`` that calls ``tap(env)`` before each add/update."""

    def __init__(self, inner: Any, tap: Callable[[Environment], None]):
        self._inner, self._tap = inner, tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, env: Environment) -> None:
        self._tap(env)
        await self._inner.add(env)

    async def update(self, env: Environment) -> None:
        self._tap(env)
        await self._inner.update(env)
