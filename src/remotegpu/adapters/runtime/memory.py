"""An in-memory EnvironmentRuntime: the fake the use-case tests run against.

It keeps the same rules as the real runtimes (idempotent calls, the disk survives
stop and a changed spec, ``remove`` leaves nothing) and models each environment's
disk as a dict of files under ``/root/workspace``.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone

from remotegpu.application.environments.ports import (
    LABEL_HOST,
    WORKSPACE_PATH,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeState,
    generation_of,
)


@dataclass
class _Environment:
    spec: RuntimeSpec
    container_id: str | None
    running: bool = False
    started_at: datetime | None = None
    disk: dict[str, str] = field(default_factory=dict)


class InMemoryRuntime:
    """EnvironmentRuntime (with exec) kept in a dict.

    Test hooks: ``disk(env_id)`` is the environment's disk (path → content),
    ``fail_start`` holds env ids whose start raises, ``exec_log`` records exec calls,
    ``crash(env_id)`` marks a running environment ``failed``,
    ``set_ssh_sessions(env_id, n)`` fakes ``n`` established SSH connections.
    """

    def __init__(self) -> None:
        self._envs: dict[str, _Environment] = {}
        self._failed: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.fail_start: set[str] = set()
        self.exec_log: list[tuple[str, list[str]]] = []
        self.exec_envs: list[dict[str, str]] = []  # the ``env`` of each exec_log entry
        self.starts = 0
        self.creates = 0
        self._ssh_sessions: dict[str, int] = {}

    async def ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        await asyncio.sleep(0)
        env = self._envs.get(spec.env_id)
        if env is not None and env.running and spec.env_id not in self._failed:
            return self._state(spec.env_id, env)
        if spec.env_id in self.fail_start:
            raise EnvironmentRuntimeError(f"environment {spec.env_id} failed to start (injected)")
        if env is None:
            env = self._envs[spec.env_id] = _Environment(spec=spec, container_id=self._new_id())
            self.creates += 1
        elif env.spec != spec or env.container_id is None:
            # A new container on the same disk, as the real runtimes do.
            env.spec, env.container_id = spec, self._new_id()
            self.creates += 1
        self._failed.pop(spec.env_id, None)
        env.running, env.started_at = True, datetime.now(timezone.utc)
        self.starts += 1
        return self._state(spec.env_id, env)

    async def stop(self, env_id: str) -> None:
        await asyncio.sleep(0)
        env = self._envs.get(env_id)
        if env is not None:
            env.running, env.started_at = False, None
            self._failed.pop(env_id, None)

    async def remove(self, env_id: str) -> None:
        await asyncio.sleep(0)
        self._envs.pop(env_id, None)
        self._failed.pop(env_id, None)
        self._ssh_sessions.pop(env_id, None)

    async def inspect(self, env_id: str) -> RuntimeState | None:
        await asyncio.sleep(0)
        env = self._envs.get(env_id)
        return None if env is None else self._state(env_id, env)

    async def list(self) -> list[RuntimeState]:
        await asyncio.sleep(0)
        return [self._state(env_id, env) for env_id, env in sorted(self._envs.items())]

    async def exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Records the call; understands ``cat PATH`` on the disk, answers 0 otherwise."""
        await asyncio.sleep(0)
        running = self._envs.get(env_id)
        if running is None or not running.running:
            raise EnvironmentRuntimeError(f"environment {env_id} is not running")
        self.exec_log.append((env_id, list(argv)))
        self.exec_envs.append(dict(env or {}))
        if len(argv) == 2 and argv[0] == "cat":
            if argv[1] in running.disk:
                return 0, running.disk[argv[1]]
            return 1, f"cat: {argv[1]}: No such file or directory\n"
        return 0, ""

    # -- test hooks -------------------------------------------------------------

    def disk(self, env_id: str) -> dict[str, str]:
        """The environment's disk: paths under /root/workspace mapped to contents."""
        return self._envs[env_id].disk

    def write_file(self, env_id: str, path: str, content: str) -> None:
        if not path.startswith(WORKSPACE_PATH + "/"):
            raise ValueError(f"only {WORKSPACE_PATH} is modelled, not {path}")
        self._envs[env_id].disk[path] = content

    def set_ssh_sessions(self, env_id: str, count: int) -> None:
        """Pretend ``count`` SSH connections are established to the environment (reported
        while it runs; stopping it does not reset the count)."""
        if count < 0:
            raise ValueError("a number of sessions is never negative")
        self._ssh_sessions[env_id] = count

    def crash(self, env_id: str, message: str = "exited with code 1") -> None:
        self._envs[env_id].running = False
        self._failed[env_id] = message

    # -----------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"mem-{next(self._ids):06d}"

    def _state(self, env_id: str, env: _Environment) -> RuntimeState:
        generation = generation_of(env.spec.labels)
        host_id = env.spec.labels.get(LABEL_HOST, "")
        if env_id in self._failed:
            return RuntimeState(env_id, "failed", env.container_id, message=self._failed[env_id], generation=generation,
                                host_id=host_id)
        if env.running:
            return RuntimeState(
                env_id, "running", env.container_id, dict(env.spec.ports), env.started_at, generation=generation,
                ssh_sessions=self._ssh_sessions.get(env_id, 0), host_id=host_id,
            )
        return RuntimeState(env_id, "stopped", env.container_id, generation=generation, host_id=host_id)
