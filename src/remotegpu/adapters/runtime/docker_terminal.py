"""TerminalOpener on Docker: ``docker exec`` with a tty, attached through its raw socket.

Creating, starting and resizing the exec are blocking Docker API calls (run in
threads); the attached socket itself is switched to non-blocking and driven by the
event loop (``sock_recv``/``sock_sendall``), so a terminal costs no thread while idle.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import docker
from docker.errors import DockerException

from remotegpu.adapters.runtime.docker_runtime import LABEL_SCOPE, DockerRuntime
from remotegpu.application.environments.ports import LABEL_ENV_ID, LABEL_MANAGED, WORKSPACE_PATH, EnvironmentRuntimeError
from remotegpu.application.environments.terminal import TerminalTarget

#: bash as a login shell when the image has it, else sh.
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"]


class DockerTerminalSession:
    def __init__(self, api: Any, exec_id: str, handle: Any) -> None:
        self._api = api
        self._exec_id = exec_id
        self._handle = handle  # docker-py's socket wrapper; keeps the HTTP response alive
        self._sock: socket.socket = getattr(handle, "_sock", handle)
        self._sock.setblocking(False)
        self._closed = False

    async def read(self) -> bytes:
        if self._closed:
            return b""
        try:
            return await asyncio.get_running_loop().sock_recv(self._sock, 65536)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        if not self._closed and data:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def resize(self, cols: int, rows: int) -> None:
        cols, rows = max(1, min(int(cols), 1000)), max(1, min(int(rows), 1000))
        try:
            await asyncio.to_thread(self._api.exec_resize, self._exec_id, height=rows, width=cols)
        except DockerException:
            pass  # the shell is gone; the next read says so

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._handle.close()
        except OSError:
            pass


class DockerTerminals:
    """Opens terminals in the environments of one Docker runtime scope on the Docker
    daemon this process talks to (so: for the embedded host only)."""

    def __init__(self, client: docker.DockerClient | None = None, *, scope: str = "default") -> None:
        self._client = client or docker.from_env()
        self._scope = scope

    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24) -> DockerTerminalSession:
        session = await asyncio.to_thread(self._open, target.env_id)
        await session.resize(cols, rows)
        return session

    def _open(self, env_id: str) -> DockerTerminalSession:
        try:
            container = self._client.containers.get(DockerRuntime.container_name(env_id))
        except DockerException as exc:
            raise EnvironmentRuntimeError(f"environment {env_id} has no container here") from exc
        labels = container.labels or {}
        mine = labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_ENV_ID) == env_id and labels.get(LABEL_SCOPE) == self._scope
        if not mine or container.status != "running":
            raise EnvironmentRuntimeError(f"environment {env_id} is not running here")
        api = self._client.api
        try:
            exec_id = api.exec_create(
                container.id, SHELL, stdin=True, tty=True, user="root", workdir=WORKSPACE_PATH,
                environment={"TERM": "xterm-256color", "HOME": "/root"},
            )["Id"]
            handle = api.exec_start(exec_id, tty=True, socket=True)
        except DockerException as exc:
            raise EnvironmentRuntimeError(f"environment {env_id}: cannot start a shell: {exc}") from exc
        return DockerTerminalSession(api, exec_id, handle)
