"""Parse and fingerprint OpenSSH public keys with the standard library only.

Accepted: ssh-ed25519, ecdsa-sha2-nistp{256,384,521}, ssh-rsa with a modulus of at
least 2048 bits. The key blob is decoded and its inner structure checked, so random
base64 is refused, not just a wrong prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from remotegpu.domain.shared.errors import InvalidInput

MIN_RSA_BITS = 2048
_ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 65),
    "ecdsa-sha2-nistp384": ("nistp384", 97),
    "ecdsa-sha2-nistp521": ("nistp521", 133),
}


@dataclass(frozen=True)
class ParsedPublicKey:
    key_type: str
    blob: bytes
    comment: str
    bits: int

    @property
    def normalized(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(f"not a valid SSH public key: {reason}", details={"field": "public_key"})


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise _invalid("truncated key data")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    start = offset + 4
    end = start + length
    if end > len(blob):
        raise _invalid("truncated key data")
    return blob[start:end], end


def _mpint_bits(value: bytes) -> int:
    return int.from_bytes(value, "big").bit_length()


def parse_public_key(text: str) -> ParsedPublicKey:
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise _invalid("expected '<type> <base64> [comment]'")
    key_type, data = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("key data is not base64") from None

    inner_type, offset = _read_string(blob, 0)
    if inner_type.decode(errors="replace") != key_type:
        raise _invalid("key type does not match key data")

    if key_type == "ssh-ed25519":
        public, offset = _read_string(blob, offset)
        if len(public) != 32:
            raise _invalid("ed25519 key must be 32 bytes")
        bits = 256
    elif key_type in _ECDSA_CURVES:
        curve_name, point_len = _ECDSA_CURVES[key_type]
        curve, offset = _read_string(blob, offset)
        point, offset = _read_string(blob, offset)
        if curve.decode(errors="replace") != curve_name or len(point) != point_len or point[0] != 4:
            raise _invalid("malformed ECDSA key")
        bits = int(curve_name.removeprefix("nistp"))
    elif key_type == "ssh-rsa":
        exponent, offset = _read_string(blob, offset)
        modulus, offset = _read_string(blob, offset)
        bits = _mpint_bits(modulus)
        if not exponent or bits == 0:
            raise _invalid("malformed RSA key")
        if bits < MIN_RSA_BITS:
            raise _invalid(f"RSA keys must have at least {MIN_RSA_BITS} bits (this one has {bits})")
    else:
        raise _invalid(f"unsupported key type '{key_type}' (use ssh-ed25519, ecdsa-sha2-nistp* or ssh-rsa)")

    if offset != len(blob):
        raise _invalid("trailing bytes after key data")
    return ParsedPublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)
