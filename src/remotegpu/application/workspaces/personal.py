from __future__ import annotations

from datetime import datetime

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Membership, Role, Workspace


async def create_personal_workspace(uow: UnitOfWork, user: User, now: datetime) -> Workspace:
    """Every user gets a workspace of their own at registration, owned by them."""
    slug = f"{user.username}-personal"
    if await uow.workspaces.slug_taken(slug):
        slug = f"{slug}-{user.id[:8]}"
    workspace = Workspace(
        id=new_id(), name=f"{user.username}'s workspace", slug=slug, is_personal=True,
        created_by=user.id, created_at=now,
    )
    await uow.workspaces.add(workspace)
    await uow.workspaces.add_member(Membership(workspace.id, user.id, Role.OWNER, now))
    return workspace
