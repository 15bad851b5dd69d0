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
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound

#: How long a membership answer is trusted (seconds): someone added to a workspace
#: sees its environments in the stream at most this much later.
MEMBERSHIP_TTL_SECONDS = 30.0


@dataclass
class EnvironmentWatcher:
    uow: UnitOfWorkFactory
    environments: EnvironmentService
    actor: User
    clock: Callable[[], float] = time.monotonic
    _members: dict[str, tuple[bool, float]] = field(default_factory=dict)

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
