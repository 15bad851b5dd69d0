"""A real OpenID Connect provider (npm ``oidc-provider``, started with node) for the
sign-in tests; installed under /var/cache/remotegpu by deploy/ci/services.d/identity.sh."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.components import missing

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "remotegpu-console"
CLIENT_SECRET = "oidc-client-secret-for-tests"


@dataclass
class OidcServer:
    issuer: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


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
    process = subprocess.Popen([node, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode(errors="replace") if process.poll() is not None else "timeout"
                process.kill()
                raise RuntimeError(f"oidc-provider did not start: {err[-2000:]}")
            time.sleep(0.1)
    return OidcServer(issuer, process)
