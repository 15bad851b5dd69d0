"""Docker's per-registry TLS files, honoured by the platform's own registry clients.

Docker reads ``/etc/docker/certs.d/<host[:port]>/``: every ``*.crt`` is a CA added to the
system's roots for that registry, and a ``*.cert`` with the ``*.key`` of the same name is
a client certificate. The server's manifest reads/deletes (adapters/images/registry.py)
and the agent's streamed save (adapters/runtime/docker_images.py) trust the same files,
so a registry with a private CA works for them wherever it works for ``docker pull``.
``REMOTEGPU_DOCKER_CERTS_D`` moves the directory (tests; a rootless engine's
``~/.config/docker/certs.d``).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/etc/docker/certs.d"


def certs_dir(host: str, root: str | None = None) -> Path | None:
    """The directory of ``host`` (``host:port`` as in image references), if there is one."""
    base = Path(root or os.environ.get("REMOTEGPU_DOCKER_CERTS_D") or DEFAULT_DIR)
    found = base / host
    try:
        return found if found.is_dir() else None
    except OSError:
        return None


def ssl_context_for(host: str, root: str | None = None) -> ssl.SSLContext:
    """The system's roots plus ``host``'s CA files, and its client certificate if any."""
    context = ssl.create_default_context()
    folder = certs_dir(host, root)
    if folder is None:
        return context
    for ca in sorted(folder.glob("*.crt")):
        context.load_verify_locations(cafile=str(ca))
    for cert in sorted(folder.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.exists():
            raise ValueError(f"{cert}: a client certificate needs its key at {key}")
        context.load_cert_chain(str(cert), str(key))
    return context


def mount_on(session: Any, base_url: str, host: str, root: str | None = None) -> None:
    """Make a ``requests.Session`` trust ``host``'s certs.d files for ``base_url`` (https)."""
    if not base_url.startswith("https://") or certs_dir(host, root) is None:
        return
    from requests.adapters import HTTPAdapter

    context = ssl_context_for(host, root)

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["ssl_context"] = context
            return super().proxy_manager_for(*args, **kwargs)

    session.mount(base_url, _Adapter())
