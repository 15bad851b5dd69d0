"""Sealing secrets the server must keep and use, never show: the port.

One sealer serves every purpose (per-environment SSH keys, secret environment
variables, ...); the ``context`` each caller passes is bound into the sealed value, so
a value opens only for the row and purpose it was made for.
"""

from __future__ import annotations

from typing import Protocol


class SealBroken(ValueError):
    """A sealed value that does not open: another server secret, another context, or altered."""


class SecretSealer(Protocol):
    def seal(self, plaintext: bytes, *, context: str) -> str:
        """An opaque text that only ``open`` with the same ``context`` turns back into ``plaintext``."""
        ...

    def open(self, sealed: str, *, context: str) -> bytes:
        """The plaintext; raises ``SealBroken`` when it does not open."""
        ...
