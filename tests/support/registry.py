"""A real Docker registry v2 (Debian's ``docker-registry``) for a test: its own config,
storage directory, free loopback port and htpasswd user; stopped and removed after.

dockerd treats registries on 127.0.0.0/8 as insecure-allowed by default (``docker info``
→ Insecure Registries), so pushes and pulls over plain HTTP work without configuring it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.components import missing
from tests.support.live_server import free_port


@dataclass(frozen=True)
class TestRegistry:
    address: str  # host:port, the prefix of image references
    username: str
    password: str
    storage: Path
    config: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def auth_header(self) -> str:
        return "Basic " + b64encode(f"{self.username}:{self.password}".encode()).decode()

    def garbage_collect(self) -> str:
        """deploy/registry/gc.sh on this registry's storage."""
        script = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "gc.sh"
        return subprocess.run([str(script), str(self.config)], capture_output=True, text=True, check=True,
                              env={**os.environ, "REGISTRY_BIN": _binary()}).stdout

    def blob_bytes(self) -> int:
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs"
        return sum(f.stat().st_size for f in blobs.rglob("data")) if blobs.exists() else 0


def _binary() -> str:
    path = os.environ.get("REMOTEGPU_TEST_REGISTRY_BIN") or shutil.which("docker-registry")
    if not path:
        missing("docker-registry is not installed (deploy/ci/services.d/images.sh)")
    return path  # type: ignore[return-value]


def _htpasswd_line(user: str, password: str) -> str:
    try:
        import bcrypt
    except ImportError:  # pragma: no cover
        missing("python bcrypt is not installed (pip install bcrypt)")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"


CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: test-registry-secret
{auth}"""

HTPASSWD_AUTH = """auth:
  htpasswd:
    realm: remotegpu-test
    path: {htpasswd}
"""

#: The platform as the token issuer (application/images/registry_access.py).
TOKEN_AUTH = """auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {bundle}
"""

TLS = """  tls:
    certificate: {certificate}
    key: {key}
"""


@dataclass(frozen=True)
class TokenAuth:
    """``auth: token`` settings: the platform's realm, and the certificate of its signing key."""

    realm: str
    certificate: bytes  # PEM
    service: str = "remotegpu-registry"
    issuer: str = "remotegpu"


@contextmanager
def running_registry(username: str = "platform", password: str = "registry-password-1", *,
                     token: TokenAuth | None = None, tls: tuple[bytes, bytes] | None = None) -> Iterator[TestRegistry]:
    """``token``: token auth instead of htpasswd; ``tls``: (certificate, key) PEM, served over https."""
    binary = _binary()
    root = Path(tempfile.mkdtemp(prefix="rgpu-registry-"))
    port = free_port()
    (root / "storage").mkdir()
    if token is not None:
        (root / "token-issuer.crt").write_bytes(token.certificate)
        auth = TOKEN_AUTH.format(realm=token.realm, service=token.service, issuer=token.issuer,
                                 bundle=root / "token-issuer.crt")
        username = password = ""
    else:
        (root / "htpasswd").write_text(_htpasswd_line(username, password))
        auth = HTPASSWD_AUTH.format(htpasswd=root / "htpasswd")
    config = root / "config.yml"
    text = CONFIG.format(storage=root / "storage", port=port, auth=auth)
    if tls is not None:
        (root / "tls.crt").write_bytes(tls[0])
        (root / "tls.key").write_bytes(tls[1])
        text = text.replace("  secret: test-registry-secret\n", "  secret: test-registry-secret\n"
                            + TLS.format(certificate=root / "tls.crt", key=root / "tls.key"))
    config.write_text(text)
    log = open(root / "registry.log", "wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    registry = TestRegistry(f"127.0.0.1:{port}", username, password, root / "storage", config,
                            "https" if tls is not None else "http")
    context = None
    if tls is not None:
        import ssl

        context = ssl.create_default_context(cadata=tls[0].decode())
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(registry.url + "/v2/", timeout=1, context=context)
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break  # up, and asking for credentials
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
