"""Port: an interactive shell with a pseudo-terminal inside a running environment.

Adapters: ``remotegpu.adapters.runtime.docker_terminal`` (docker exec with a tty) for
hosts whose runtime the server can reach itself; an SSH-based one could serve remote
hosts later.
"""

from __future__ import annotations

from typing import Protocol


class TerminalSession(Protocol):
    async def read(self) -> bytes:
        """The next output of the terminal; ``b""`` once the shell or the environment ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Keystrokes (raw bytes) to the shell."""
        ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def close(self) -> None:
        """End the session (the shell sees its terminal hang up). Idempotent."""
        ...


class TerminalOpener(Protocol):
    async def open(self, env_id: str, *, cols: int = 80, rows: int = 24) -> TerminalSession:
        """A login shell as root in ``/root/workspace`` of the running environment.
        Raises ``EnvironmentRuntimeError`` when it does not run here."""
        ...
