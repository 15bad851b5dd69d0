"""The platform's registry clients trust Docker's ``certs.d/<host:port>/*.crt`` CA files:
a real docker-registry served over TLS with a certificate of a private CA (made here),
the server's client (manifest reads) and the agent's (a save's uploads) both refuse it
without the CA and reach it with ``<certs.d>/<host:port>/ca.crt``. The certs.d directory is
a temporary one (``REMOTEGPU_DOCKER_CERTS_D``): nothing is written under /etc/docker."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remotegpu.adapters.images.registry import HttpRegistry
from remotegpu.adapters.runtime.docker_images import RegistryClient
from tests.support.registry import running_registry


def private_ca_and_server_cert() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate for 127.0.0.1, server key) in PEM."""
    now = datetime.now(timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test private CA")).issuer_name(name("test private CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_registry():
    ca, cert, key = private_ca_and_server_cert()
    with running_registry(tls=(cert + ca, key)) as registry:
        yield registry, ca


def test_registry_clients_trust_the_hosts_certs_d_ca(tls_registry, tmp_path, monkeypatch):
    registry, ca = tls_registry
    monkeypatch.setenv("REMOTEGPU_DOCKER_CERTS_D", str(tmp_path))
    url = f"https://{registry.address}"
    missing = f"{registry.address}/remotegpu/platform/none:latest"

    # Without the CA: refused by both clients (not silently unverified).
    server_side = HttpRegistry(url, username=registry.username, password=registry.password)
    with pytest.raises((aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        asyncio.run(server_side.manifest(missing))
    agent_side = RegistryClient(url, (registry.address, registry.username, registry.password))
    with pytest.raises(requests.exceptions.SSLError):
        agent_side.manifest("remotegpu/platform/none", "latest")
    agent_side.close()

    # Docker's layout: <certs.d>/<host:port>/ca.crt.
    (tmp_path / registry.address).mkdir()
    (tmp_path / registry.address / "ca.crt").write_bytes(ca)
    server_side = HttpRegistry(url, username=registry.username, password=registry.password)
    assert asyncio.run(server_side.manifest(missing)) is None  # reached, authenticated: 404
    agent_side = RegistryClient(url, (registry.address, registry.username, registry.password))
    try:
        assert agent_side.manifest("remotegpu/platform/none", "latest") is None
        # A whole blob upload over the same session: the CA holds for every request.
        data = b"layer bytes"
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scopes = ("repository:remotegpu/platform/none:pull,push",)
        started = agent_side.request("POST", "/v2/remotegpu/platform/none/blobs/uploads/", scopes, ok=(202,))
        location = started.headers["Location"]
        sep = "&" if "?" in location else "?"
        agent_side.request("PUT", f"{location}{sep}digest={digest}", scopes, ok=(201,), data=data,
                           headers={"Content-Type": "application/octet-stream"})
        assert agent_side.has_blob("remotegpu/platform/none", digest)
    finally:
        agent_side.close()
