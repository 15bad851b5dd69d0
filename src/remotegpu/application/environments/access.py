"""Who may see and operate an environment.

Viewers see every environment of their workspace; members operate their own;
workspace admins and owners operate all of the workspace; platform admins anything.
Outside the workspace an environment does not exist (404).

Those who may operate an environment also see its plain variables' values; everyone
else who sees it (viewers, other members of a shared one) sees the names only, and
secret variables are never shown to anyone (``may_operate`` decides, for both).
"""

from __future__ import annotations

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.environments.models import Environment, EnvStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound, PermissionDenied
from remotegpu.domain.workspaces.models import Role


def may_operate(actor: User, role: Role | None, env: Environment) -> bool:
    """Platform admins, the workspace's admins and owners, and its members for their own."""
    if actor.is_admin:
        return True
    if role is None:
        return False
    return role.at_least(Role.ADMIN) or (role.at_least(Role.MEMBER) and env.owner_id == actor.id)


async def load_visible_with_role(uow: UnitOfWork, actor: User, env_id: str) -> tuple[Environment, Role | None]:
    env = await uow.environments.get(env_id)
    if env is None or env.status is EnvStatus.DELETED:
        raise NotFound("environment not found")
    view = await authorize(uow, actor, env.workspace_id, Role.VIEWER)  # NotFound outside the workspace
    return env, view.role


async def load_visible(uow: UnitOfWork, actor: User, env_id: str) -> Environment:
    return (await load_visible_with_role(uow, actor, env_id))[0]


async def load_operable(uow: UnitOfWork, actor: User, env_id: str) -> Environment:
    env, role = await load_visible_with_role(uow, actor, env_id)
    if may_operate(actor, role, env):
        return env
    raise PermissionDenied("only the environment's owner or a workspace admin can do this", code="not_environment_owner")
