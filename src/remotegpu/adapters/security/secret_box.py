"""``SecretBox`` with AES-256-GCM (the ``cryptography`` package).

The key is derived from the server's secret key with HKDF-SHA256 under a label of its
own, so it is independent of the token-signing use of the same secret. Sealed form:
``v1:`` + urlsafe base64 of (12-byte random nonce ‖ ciphertext ‖ tag); the context
string is the associated data.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1:"
_NONCE = 12


class AesGcmSecretBox:
    def __init__(self, server_secret: str) -> None:
        if not server_secret:
            raise ValueError("a server secret is required")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"remotegpu/environment-secrets/v1").derive(
            server_secret.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _VERSION + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        if not sealed.startswith(_VERSION):
            raise ValueError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_VERSION):].encode())
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise ValueError("the sealed value does not open with this key and context") from None
