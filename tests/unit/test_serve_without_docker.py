"""`remotegpu serve` on a machine without Docker: a clear start-up error saying what to
do, never a silent fallback to running environments as local processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_refuses_to_start_without_docker_and_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
    env.update(DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock", REMOTEGPU_DATA_DIR=str(tmp_path / "data"),
               REMOTEGPU_HTTP_PORT=str(free_port()))
    result = subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Docker daemon answers" in result.stderr and "REMOTEGPU_RUNTIME=local" in result.stderr
    assert "install it" in result.stderr
    assert not (tmp_path / "data" / "local-runtime").exists()
