"""Registry v2 token auth: the JWTs the platform signs, and the key + certificate the
registry trusts (its ``auth: token: rootcertbundle``).

Docker's registry 2.x (Debian's docker-registry 2.8) checks a token's signature with the
key named by the JWT header's ``kid``: the **libtrust key ID** of a public key in its
root certificate bundle (SHA-256 of the key's DER SubjectPublicKeyInfo, first 240 bits,
base32, in colon-separated groups of 4). It then checks ``iss`` (= ``issuer``), ``aud``
(= ``service``), ``exp``/``nbf`` (with 60 s of leeway) and that the ``access`` claim holds
the action asked on the repository asked. ES256 (P-256) or RS256 (RSA) keys.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: Any) -> str:
    """The key ID the registry computes for a certificate's public key (libtrust)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    encoded = base64.b32encode(digest.finalize()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


class JwtRegistryTokenSigner:
    """``application.images.registry_access.RegistryTokenSigner`` with a PEM private key."""

    def __init__(self, key_pem: bytes, *, issuer: str, service: str) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name != "secp256r1":
                raise ValueError("registry token key: EC keys must be P-256 (ES256)")
            self._alg = "ES256"
        elif isinstance(key, rsa.RSAPrivateKey):
            self._alg = "RS256"
        else:
            raise ValueError("registry token key: an EC P-256 or RSA private key (PEM)")
        self._key = key
        self.kid = libtrust_key_id(key.public_key())
        self.issuer, self._service = issuer, service

    @classmethod
    def from_file(cls, path: str, *, issuer: str, service: str) -> "JwtRegistryTokenSigner":
        return cls(Path(path).read_bytes(), issuer=issuer, service=service)

    @property
    def service(self) -> str:
        return self._service

    def sign(self, subject: str, access: list[dict[str, Any]], ttl_seconds: int, *, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        issued = int(now.timestamp())
        header = {"typ": "JWT", "alg": self._alg, "kid": self.kid}
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self._service, "iat": issued, "nbf": issued - 1,
            "exp": issued + int(ttl_seconds), "jti": secrets.token_hex(16), "access": access,
        }
        signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64(json.dumps(claims, separators=(",", ":")).encode()))
        if self._alg == "ES256":
            der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(signature)


def make_key_and_certificate(common_name: str = "remotegpu registry token issuer",
                             days: int = 3650) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed certificate of it (PEM): the key goes to the
    platform (``REMOTEGPU_REGISTRY_TOKEN_KEY``), the certificate to the registry
    (``auth: token: rootcertbundle``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
