"""Environment changes, announced after they are committed.

Two listeners need to hear about a change as it happens rather than on their next
poll: a host's agent (its environment's desired state changed — act now, not on the
next heartbeat) and browsers watching the console (server-sent events). Both
subscribe to one ``ChangeFeed``.

Nothing has to remember to publish: ``ChangeTrackingUnitOfWork`` wraps the unit of
work, notes every environment a use case saved, and publishes the ones whose visible
state differs from what was loaded — after the commit, so a listener that reads the
database sees the change. A change that was rolled back is never announced.

The feed is a hint, not a log: a listener that misses one (a dropped connection, a
slow consumer) must still converge by re-reading (the agent's regular heartbeat, the
console's reload when its stream reconnects).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.environments.models import Environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentChange:
    env_id: str
    workspace_id: str
    host_id: str | None
    status: str
    desired: str
    generation: int
    #: Placement, desired state or generation changed: the host's agent has work to do.
    for_agent: bool


class FeedOverflow(Exception):
    """The subscriber fell behind and changes were dropped: re-read everything."""


class ChangeSubscription(Protocol):
    async def get(self) -> EnvironmentChange:
        """The next change; raises ``FeedOverflow`` once after changes were dropped."""
        ...

    def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Fan-out of environment changes to every subscriber of this process (and, with a
    shared broker, of every process)."""

    async def publish(self, changes: Sequence[EnvironmentChange]) -> None: ...

    def subscribe(self) -> ChangeSubscription:
        """Changes published from now on; ``close()`` it when done."""
        ...


def _visible(env: Environment) -> tuple[Any, ...]:
    """What a watcher can see change (queue position is derived, not stored)."""
    return (env.status, env.desired, env.generation, env.host_id, env.status_message, env.with_gpu, env.name,
            env.shared, env.stop_after_minutes, env.idle_stop_minutes, env.started_at,
            env.ssh_host_key)  # shown by the access info (known_hosts)


def _agent_facing(env: Environment) -> tuple[Any, ...]:
    """What the host's agent acts on (see AgentService._desired)."""
    return (env.host_id, env.desired, env.generation, env.status.holds_resources)


class _TrackedEnvironments:
    """The environment repository, remembering what was loaded and what was saved."""

    _LOADERS = ("get", "list", "list_for_host", "list_by_status", "list_autostop_due")

    def __init__(self, inner: Any, loaded: dict[str, tuple], saved: dict[str, Environment]):
        self._inner = inner
        self._loaded = loaded
        self._saved = saved

    def _remember(self, result: Any) -> None:
        envs = result[0] if isinstance(result, tuple) else result  # list() returns (items, total)
        if isinstance(envs, Environment):
            envs = [envs]
        for env in envs or ():
            if isinstance(env, Environment):
                self._loaded.setdefault(env.id, (_visible(env), _agent_facing(env)))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._LOADERS:
            return attr

        async def load(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            self._remember(result)
            return result

        return load

    async def add(self, env: Environment) -> None:
        await self._inner.add(env)
        self._saved[env.id] = env

    async def update(self, env: Environment) -> None:
        await self._inner.update(env)
        self._saved[env.id] = env


class ChangeTrackingUnitOfWork:
    """A ``UnitOfWork`` that publishes the environments it changed, after commit.

    Everything but ``environments`` and ``commit`` is the wrapped unit of work's own.
    """

    def __init__(self, inner: UnitOfWork, feed: ChangeFeed):
        self._inner = inner
        self._feed = feed
        self._loaded: dict[str, tuple] = {}
        self._saved: dict[str, Environment] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "ChangeTrackingUnitOfWork":
        await self._inner.__aenter__()
        self._loaded, self._saved = {}, {}
        self.environments = _TrackedEnvironments(self._inner.environments, self._loaded, self._saved)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._saved = {}
        await self._inner.__aexit__(*exc)

    async def rollback(self) -> None:
        self._saved = {}
        await self._inner.rollback()

    async def commit(self) -> None:
        await self._inner.commit()
        changes = self._changes()
        self._saved = {}
        if not changes:
            return
        try:
            await self._feed.publish(changes)
        except Exception:  # noqa: BLE001 - the change is committed; listeners re-read on their own
            log.warning("publishing %d environment change(s) failed", len(changes), exc_info=True)

    def _changes(self) -> list[EnvironmentChange]:
        changes = []
        for env in self._saved.values():
            before = self._loaded.get(env.id)
            visible, agent_facing = _visible(env), _agent_facing(env)
            if before is not None and before[0] == visible and before[1] == agent_facing:
                continue  # saved but unchanged (a heartbeat re-saves every environment)
            self._loaded[env.id] = (visible, agent_facing)  # a second commit compares with this one
            changes.append(EnvironmentChange(
                env_id=env.id, workspace_id=env.workspace_id, host_id=env.host_id, status=env.status.value,
                desired=env.desired.value, generation=env.generation,
                for_agent=env.host_id is not None and (before is None or before[1] != agent_facing),
            ))
        return changes
