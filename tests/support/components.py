"""Real components the tests need, and what happens when one is missing.

On a developer laptop a missing component skips the test with a one-line reason.
In CI (``CI=true``) a missing component fails the test: CI must run everything.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

from remotegpu.adapters.runtime.docker_images import list_images

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required component missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """An asyncpg URL of a throw-away test database (REMOTEGPU_TEST_POSTGRES_URL)."""
    url = os.environ.get("REMOTEGPU_TEST_POSTGRES_URL")
    if not url:
        missing("REMOTEGPU_TEST_POSTGRES_URL is not set (see .ci/run)")
    if not _reachable(url, 5432):
        missing(f"PostgreSQL not reachable at {urlparse(url).hostname}:{urlparse(url).port}")
    return url


def redis_url() -> str:
    url = os.environ.get("REMOTEGPU_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if not _reachable(url, 6379):
        missing("Redis not reachable (set REMOTEGPU_TEST_REDIS_URL)")
    return url


def docker_client():
    """A docker SDK client for a daemon that answers."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any failure means "no daemon here"
        missing(f"Docker daemon not reachable: {exc.__class__.__name__}")


def docker_with_image(image: str):
    """A docker SDK client whose daemon has ``image`` (the base image: ``make image``)."""
    client = docker_client()
    try:
        client.images.get(image)
    except Exception:  # noqa: BLE001 - any failure: the image is not here
        missing(f"{image} is not built (make image)")
    return client


def remove_scope(docker, scope: str) -> None:
    """Remove every container, volume and snapshot image a test's runtime made under ``scope``."""
    def label() -> dict:  # a fresh dict each time: docker-py's images.list(name=) adds to the one it gets
        return {"label": f"remotegpu.scope={scope}"}

    for container in docker.containers.list(all=True, filters=label()):
        container.remove(force=True)
    for volume in docker.volumes.list(filters=label()):
        volume.remove(force=True)
    for image in list_images(docker, "rgpu-snapshot", label()):
        for ref in image.tags:
            docker.images.remove(ref)
    for network in docker.networks.list(filters=label()):  # workspace networks (docker_network.py)
        network.remove()
    from remotegpu.adapters.runtime.docker_network import interface_prefix
    from remotegpu.adapters.runtime.egress import EgressRules

    EgressRules(scope, interface_prefix(scope)).remove()  # the embedded agent's firewall rules


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


def wait_listening(process, port: int, name: str, timeout: float = 30.0, log=None) -> None:
    """Wait until a server the test started accepts connections on 127.0.0.1:``port``;
    if it exits or times out first, kill it and raise with the tail of its ``log`` file."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                tail = open(log, errors="replace").read()[-2000:] if log else ""
                raise RuntimeError(f"{name} did not start: {tail or 'timeout'}")
            time.sleep(0.05)
