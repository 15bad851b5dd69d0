"""The async port over a runtime whose work is blocking (Docker SDK calls, processes, files).

Subclasses implement ``_ensure_running``, ``_stop``, ``_remove``, ``_inspect``, ``_list``
and ``_validate_env_id``; each call runs in a thread, and changes to one environment
are serialised by a per-environment lock.
"""

from __future__ import annotations

import asyncio

from remotegpu.application.environments.ports import RuntimeSpec, RuntimeState


class ThreadedRuntime:
    _locks: dict[str, asyncio.Lock]

    def _validate_env_id(self, env_id: str) -> None:
        raise NotImplementedError

    def _lock(self, env_id: str) -> asyncio.Lock:
        return self._locks.setdefault(env_id, asyncio.Lock())

    async def ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        self._validate_env_id(spec.env_id)
        async with self._lock(spec.env_id):
            return await asyncio.to_thread(self._ensure_running, spec)

    async def stop(self, env_id: str) -> None:
        self._validate_env_id(env_id)
        async with self._lock(env_id):
            await asyncio.to_thread(self._stop, env_id)

    async def remove(self, env_id: str) -> None:
        self._validate_env_id(env_id)
        async with self._lock(env_id):
            await asyncio.to_thread(self._remove, env_id)

    async def inspect(self, env_id: str) -> RuntimeState | None:
        self._validate_env_id(env_id)
        return await asyncio.to_thread(self._inspect, env_id)

    async def list(self) -> list[RuntimeState]:
        return await asyncio.to_thread(self._list)
