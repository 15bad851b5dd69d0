"""Live environment changes for one person: which changes they may see, and how.

A stream (the console's server-sent events) subscribes to the ``ChangeFeed`` and asks
``EnvironmentWatcher.view_for`` for every change: the environment as ``get`` returns
it, or ``None`` when the change belongs to a workspace the person is not a member of
— the same environments the list shows them. Membership answers are kept for a short
while, so a busy fleet does not cost one query per change and stream for strangers'
environments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from remotegpu.application.environments.service import EnvironmentService, EnvironmentView
from remotegpu.application.shared.change_feed import ChangeFeed, ChangeSubscription, EnvironmentChange
from remotegpu.application.shared.ports import UnitOfWorkFactory
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound

#: How long a membership answer is trusted (seconds): someone added to a workspace
#: sees its environments in the stream at most this much later.
MEMBERSHIP_TTL_SECONDS = 30.0
#: At most this often (seconds) a stream re-reads its queued environments after a
#: change elsewhere: the queue is one FIFO for the whole platform, so anyone's
#: environment leaving it moves everyone's position.
QUEUE_REFRESH_SECONDS = 1.0


@dataclass
class EnvironmentWatcher:
    uow: UnitOfWorkFactory
    environments: EnvironmentService
    actor: User
    clock: Callable[[], float] = time.monotonic
    _members: dict[str, tuple[bool, float]] = field(default_factory=dict)
    # env id → queue position last sent, for this person's queued environments.
    _queued: dict[str, int | None] = field(default_factory=dict)
    _queue_checked_at: float = 0.0

    async def prime(self) -> None:
        """Learn this person's queued environments (a stream starts knowing nothing)."""
        views, _ = await self.environments.list(self.actor, workspace_id=None, statuses=[EnvStatus.QUEUED],
                                                limit=500, offset=0)
        for view in views:
            self._remember_queued(view)

    async def views_for(self, change: EnvironmentChange) -> list[EnvironmentView]:
        """What to send for ``change``: the changed environment when visible, then any
        of this person's queued environments whose queue position moved."""
        views = []
        view = await self.view_for(change)
        if view is not None:
            views.append(view)
            self._remember_queued(view)
        now = self.clock()
        if self._queued and now - self._queue_checked_at >= QUEUE_REFRESH_SECONDS:
            self._queue_checked_at = now
            for env_id, position in list(self._queued.items()):
                if env_id == change.env_id:
                    continue
                try:
                    moved = await self.environments.get(self.actor, env_id)
                except NotFound:
                    self._queued.pop(env_id, None)
                    continue
                if moved.queue_position != position or moved.env.status is not EnvStatus.QUEUED:
                    views.append(moved)
                    self._remember_queued(moved)
        return views

    def _remember_queued(self, view: EnvironmentView) -> None:
        if view.env.status is EnvStatus.QUEUED:
            self._queued[view.env.id] = view.queue_position
        else:
            self._queued.pop(view.env.id, None)

    async def view_for(self, change: EnvironmentChange) -> EnvironmentView | None:
        if not await self._is_member(change.workspace_id):
            return None
        if change.status == "deleted":
            async with self.uow() as uow:
                env = await uow.environments.get(change.env_id)
            return EnvironmentView(env, None, [], None) if env is not None else None
        try:
            return await self.environments.get(self.actor, change.env_id)
        except NotFound:  # deleted since, or the membership just ended
            return None

    async def _is_member(self, workspace_id: str) -> bool:
        now = self.clock()
        known = self._members.get(workspace_id)
        if known is not None and known[1] > now:
            return known[0]
        async with self.uow() as uow:
            member = await uow.workspaces.get_member(workspace_id, self.actor.id) is not None
        if len(self._members) > 1000:
            self._members.clear()
        self._members[workspace_id] = (member, now + MEMBERSHIP_TTL_SECONDS)
        return member


@dataclass
class EnvironmentWatch:
    uow: UnitOfWorkFactory
    environments: EnvironmentService
    feed: ChangeFeed

    def subscribe(self, actor: User) -> tuple[ChangeSubscription, EnvironmentWatcher]:
        return self.feed.subscribe(), EnvironmentWatcher(self.uow, self.environments, actor)
