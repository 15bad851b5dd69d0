"""``SecretSealer``: AES-256-GCM under a key derived (HKDF-SHA256) from the server's secret.

Sealed form: ``v1.`` + URL-safe base64 of a random 96-bit nonce and the ciphertext
with its tag. The caller's ``context`` is the associated data: a sealed value opens
only for the row and purpose it was made for (copying one environment's sealed key
into another row's column gives nothing). Every server replica derives the same key
from the same ``REMOTEGPU_SECRET_KEY``; another secret cannot open what was sealed.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from remotegpu.application.shared.sealing import SealBroken

_PREFIX = "v1."
_INFO = b"remotegpu sealed secrets v1"  # another purpose of the server secret gets another key
_NONCE_BYTES = 12


class AesGcmSealer:
    def __init__(self, server_secret: str) -> None:
        if not server_secret:
            raise ValueError("the server secret is empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(server_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, context.encode())
        return _PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, sealed: str, *, context: str) -> bytes:
        if not sealed.startswith(_PREFIX):
            raise SealBroken("not a sealed value of this format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX):].encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise SealBroken("not a sealed value of this format") from None
        if len(raw) <= _NONCE_BYTES:
            raise SealBroken("sealed value too short")
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SealBroken("sealed value does not open (another secret, another context, or altered)") from None
