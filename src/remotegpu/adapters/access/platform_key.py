"""The platform's own SSH key: how the server logs in to environments it cannot
``docker exec`` into (the web terminal on remote hosts).

One ed25519 keypair, generated on first use and kept in the data dir (``0600``, or a
path the operator configures — every server replica must use the same key). Only its
public half leaves this process: the access gateway puts it into every environment's
managed authorized_keys block. The private key is never returned by the API.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("remotegpu.platform_key")

COMMENT = "remotegpu-platform"


class PlatformSshKey:
    """Loads (or creates, once) the keypair at ``path``; cheap after the first call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._private_pem: bytes | None = None
        self._public: str | None = None

    def public_key(self) -> str:
        """``ssh-ed25519 AAAA... remotegpu-platform``: one authorized_keys line."""
        self._load()
        assert self._public is not None
        return self._public

    def private_key_pem(self) -> bytes:
        """The private key (OpenSSH PEM), for the SSH client. Never send it anywhere."""
        self._load()
        assert self._private_pem is not None
        return self._private_pem

    def _load(self) -> None:
        if self._private_pem is not None:
            return
        with self._lock:
            if self._private_pem is not None:
                return
            pem = self._read() or self._create()
            key = serialization.load_ssh_private_key(pem, password=None)
            public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            self._public = f"{public.decode()} {COMMENT}"
            self._private_pem = pem

    def _read(self) -> bytes | None:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("platform SSH key %s was readable by others; mode set to 0600", self.path)
            os.chmod(self.path, 0o600)
        return self.path.read_bytes()

    def _create(self) -> bytes:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption(),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written whole under a temporary name, then linked into place: a concurrent
        # process (a replica, a worker) sees either no key or a complete one.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            try:
                os.link(tmp, self.path)
            except FileExistsError:  # someone else's key won
                return self.path.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)
        log.info("platform SSH key created at %s", self.path)
        return pem
