"""Run the real ``remotegpu serve`` in a subprocess on a free port, for e2e tests and benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path):
        self.url = url
        self.process = process
        self.log_path = log_path

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else {}

    def login(self, username: str, password: str) -> str:
        status, body = self.request("POST", "/api/v1/auth/login", {"username": username, "password": password})
        assert status == 200, body
        return body["access_token"]

    def signup(self, username: str, password: str = "correct horse battery") -> str:
        status, body = self.request(
            "POST", "/api/v1/auth/register", {"username": username, "email": f"{username}@example.com", "password": password}
        )
        assert status == 201, body
        return self.login(username, password)


@contextmanager
def live_server(data_dir: Path, **env: str) -> Iterator[LiveServer]:
    port = int(env.get("REMOTEGPU_HTTP_PORT") or free_port())  # a port given: e.g. an OIDC redirect URI names it
    full_env = {
        **os.environ,
        "REMOTEGPU_DATA_DIR": str(data_dir),
        "REMOTEGPU_HTTP_HOST": "127.0.0.1",
        "REMOTEGPU_HTTP_PORT": str(port),
        "REMOTEGPU_ADMIN_USERNAME": "admin",
        "REMOTEGPU_ADMIN_PASSWORD": "admin-password-123",
        "REMOTEGPU_PASSWORD_HASH_PROFILE": "fast",
        "REMOTEGPU_REGISTER_LIMIT_PER_IP": "10000",  # tests sign many users up from 127.0.0.1
        "REMOTEGPU_LOG_LEVEL": "WARNING",
        "REMOTEGPU_SECRET_KEY": "live-server-secret-key-0123456789abcdef",
        # Tests get an in-memory runtime with fake GPUs unless they ask for Docker.
        "REMOTEGPU_RUNTIME": "memory",
        "REMOTEGPU_AGENT_FAKE_GPUS": "4xNVIDIA A100-SXM4-80GB",
        **env,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    if "REMOTEGPU_DATABASE_URL" in env:
        subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "migrate"], env=full_env, check=True, capture_output=True)
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "remotegpu.entrypoints.cli", "serve"], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield LiveServer(url, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
