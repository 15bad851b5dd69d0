"""Who may see and operate an environment.

Viewers see every environment of their workspace; members operate their own;
workspace admins and owners operate all of the workspace; platform admins anything.
Outside the workspace an environment does not exist (404).
"""

from __future__ import annotations

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.environments.models import Environment, EnvStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound, PermissionDenied
from remotegpu.domain.workspaces.models import Role


async def load_visible(uow: UnitOfWork, actor: User, env_id: str) -> Environment:
    env = await uow.environments.get(env_id)
    if env is None or env.status is EnvStatus.DELETED:
        raise NotFound("environment not found")
    await authorize(uow, actor, env.workspace_id, Role.VIEWER)  # NotFound outside the workspace
    return env


async def load_operable(uow: UnitOfWork, actor: User, env_id: str) -> Environment:
    env = await load_visible(uow, actor, env_id)
    if actor.is_admin:
        return env
    view = await authorize(uow, actor, env.workspace_id, Role.VIEWER)
    role = view.role
    if role.at_least(Role.ADMIN) or (role.at_least(Role.MEMBER) and env.owner_id == actor.id):
        return env
    raise PermissionDenied("only the environment's owner or a workspace admin can do this", code="not_environment_owner")
