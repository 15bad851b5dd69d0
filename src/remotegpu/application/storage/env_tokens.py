"""Storage credentials inside environments: `remotegpu dataset push` from a notebook.

Every running environment gets ``REMOTEGPU_TOKEN`` (and ``REMOTEGPU_URL`` when the
platform's public URL is configured) in its container's variables. The token:

- is **scoped**: it reaches the storage API only (datasets, models, uploads, storage
  usage; the CLI finds the workspace in ``REMOTEGPU_WORKSPACE_ID``), and only the environment's
  workspace (another workspace's dataset answers 404, as if unknown). It acts as the
  environment's owner, with the owner's role in that workspace;
- is **short-lived**: it is an HMAC (under the server's secret key) of the environment's
  id and *generation*, valid only while that environment is starting or running at that
  generation. A stop, a restart or a delete voids it; the next start brings a new one;
- is **never stored and never returned** by the API: the server derives it when it hands
  the agent the container's spec (like the environment's secret variables), so there is
  nothing to leak from the database and nothing the console could show twice. The user's
  own API tokens never enter the container.

Versions pushed with it record their source: the environment.
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass

from remotegpu.application.shared.ports import UnitOfWorkFactory
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.identity.models import User

PREFIX = "rgpu_env_"
#: Paths an environment's token may call (everything else: 403 ``token_scope``).
SCOPE_PREFIXES = ("/api/v1/datasets", "/api/v1/models", "/api/v1/uploads/", "/api/v1/storage/usage")


@dataclass(frozen=True)
class EnvironmentScope:
    """Set for a request authenticated by an environment's token: what it may touch."""

    workspace_id: str
    env_id: str


#: The scope of the request being served (None: a person's own credentials, unscoped).
current_scope: ContextVar[EnvironmentScope | None] = ContextVar("storage_env_scope", default=None)


def in_scope(method: str, path: str) -> bool:
    return path.startswith(SCOPE_PREFIXES)


@dataclass
class EnvironmentStorageTokens:
    uow: UnitOfWorkFactory
    key: bytes

    def _mac(self, env_id: str, generation: int) -> str:
        return hmac.new(self.key, f"storage-token:{env_id}:{generation}".encode(), hashlib.sha256).hexdigest()[:40]

    def issue(self, env_id: str, generation: int) -> str:
        """The token of this run of the environment (the same on every beat: the container's spec does not change)."""
        return f"{PREFIX}{env_id}.{generation}.{self._mac(env_id, generation)}"

    async def authenticate(self, bearer: str) -> tuple[User, EnvironmentScope] | None:
        """The owner and the scope, or None (malformed, forged, or the run it belonged to is over)."""
        try:
            env_id, generation, mac = bearer[len(PREFIX):].split(".")
            number = int(generation)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(env_id, number)):
            return None
        async with self.uow() as uow:
            env = await uow.environments.get(env_id)
            if env is None or env.generation != number or env.status not in (EnvStatus.STARTING, EnvStatus.RUNNING):
                return None
            user = await uow.users.get(env.owner_id)
        if user is None or not user.is_active:
            return None
        return user, EnvironmentScope(env.workspace_id, env.id)
