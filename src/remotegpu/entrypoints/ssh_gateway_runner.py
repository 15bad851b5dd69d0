"""Runs the SSH gateway inside ``remotegpu serve`` when ``REMOTEGPU_SSH_GATEWAY_PORT`` is set."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.ssh_gateway")


def ssh_gateway_ctx(container: "Container"):
    async def ctx(app: "web.Application") -> AsyncIterator[None]:
        from remotegpu.adapters.access.ssh_gateway import SshGateway

        settings = container.settings()
        gateway = SshGateway(
            container.ssh_gateway_access(),
            host_key_path=settings.ssh_gateway_host_key or settings.data_dir / "ssh_gateway_host_key",
            port=settings.ssh_gateway_port, bind=settings.ssh_gateway_bind,
            recheck_seconds=settings.ssh_gateway_recheck_seconds,
        )
        await gateway.start()
        yield
        await gateway.stop()

    return ctx


_public_keys: dict[tuple[str, float], str] = {}


def gateway_host_key(settings) -> str:
    """The gateway's public host key ("type base64") for known_hosts lines; "" until the
    gateway has made it (its first start)."""
    import asyncssh

    path = settings.ssh_gateway_host_key or settings.data_dir / "ssh_gateway_host_key"
    try:
        stamp = (str(path), path.stat().st_mtime)
    except OSError:
        return ""
    if stamp not in _public_keys:
        try:
            key = asyncssh.read_private_key(str(path))
        except (OSError, asyncssh.KeyImportError, ValueError):
            return ""
        _public_keys.clear()
        _public_keys[stamp] = " ".join(key.export_public_key("openssh").decode().split()[:2])
    return _public_keys[stamp]
