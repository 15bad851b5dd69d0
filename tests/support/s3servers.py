"""S3-compatible servers for the object store tests, started on a free port per test module.

A MinIO server cannot be built or installed on our machines; two independent S3
implementations that do install stand in: moto's server mode (its own virtualenv, made
by deploy/ci/services.d/storage.sh) and s3rver (npm, same script). Under CI=true a
missing one fails the test (tests/support/components.missing).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.components import missing

CACHE = Path(os.environ.get("REMOTEGPU_CACHE_DIR", "/var/cache/remotegpu"))
MOTO = os.environ.get("REMOTEGPU_TEST_MOTO_SERVER", str(CACHE / "moto-venv/bin/moto_server"))
S3RVER = os.environ.get("REMOTEGPU_TEST_S3RVER", str(CACHE / "s3rver/node_modules/.bin/s3rver"))


@dataclass(frozen=True)
class S3Server:
    kind: str
    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextmanager
def s3_server(kind: str) -> Iterator[S3Server]:
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix=f"rgpu-{kind}-")
    if kind == "moto":
        if not os.access(MOTO, os.X_OK):
            missing(f"moto_server not installed at {MOTO} (run deploy/ci/services.d/storage.sh)")
        cmd = [MOTO, "-H", "127.0.0.1", "-p", str(port)]
        server = S3Server("moto", f"http://127.0.0.1:{port}", "testing", "testing")
    elif kind == "s3rver":
        if not os.access(S3RVER, os.X_OK):
            missing(f"s3rver not installed at {S3RVER} (run deploy/ci/services.d/storage.sh)")
        cmd = [S3RVER, "-d", workdir, "-a", "127.0.0.1", "-p", str(port), "--silent", "--no-vhost-buckets"]
        server = S3Server("s3rver", f"http://127.0.0.1:{port}", "S3RVER", "S3RVER")
    else:
        raise ValueError(kind)
    log = open(Path(workdir) / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    try:
        _wait(port, proc, kind)
        yield server
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
