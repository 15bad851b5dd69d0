"""A real OpenID Connect provider (npm ``oidc-provider``, started with node) for the
sign-in tests; installed under /var/cache/remotegpu by deploy/ci/services.d/identity.sh."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.components import missing, wait_listening

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "remotegpu-console"
CLIENT_SECRET = "oidc-client-secret-for-tests"


@dataclass
class OidcServer:
    issuer: str
    process: subprocess.Popen
    log: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        os.unlink(self.log)


def start_oidc_provider(redirect_uri: str, accounts: dict) -> OidcServer:
    modules = os.environ.get("REMOTEGPU_TEST_OIDC_PROVIDER", "/var/cache/remotegpu/oidc-provider/node_modules")
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(modules, "oidc-provider")):
        missing("oidc-provider (npm) is not installed (deploy/ci/services.d/identity.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    # The script is resolved from the package's folder, so its import finds node_modules there.
    script = Path(modules).parent / "rgpu_oidc_provider.mjs"
    script.write_text(SCRIPT.read_text())
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_ISSUER": issuer, "OIDC_CLIENT_ID": CLIENT_ID,
           "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_REDIRECT_URI": redirect_uri, "OIDC_ACCOUNTS": json.dumps(accounts),
           "NODE_ENV": "development"}
    # Its output goes to a file: an unread pipe would stall it once full.
    with tempfile.NamedTemporaryFile(prefix="rgpu-oidc-", suffix=".log", delete=False) as log:
        process = subprocess.Popen([node, str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(process, port, "oidc-provider", 30, log.name)
    except RuntimeError:
        os.unlink(log.name)
        raise
    return OidcServer(issuer, process, log.name)
