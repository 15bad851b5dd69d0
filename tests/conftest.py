"""Shared fixtures: an app on in-memory or SQLite persistence, users with tokens, a client."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import aiohttp
import pytest

from remotegpu.entrypoints.config import load_settings
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
# One Kubernetes control plane per session, shared by every module that asks for it.
from tests.support.kube_cluster import kube_cluster  # noqa: F401, E402 - a fixture

_counter = itertools.count()


def make_settings(tmp_path, **overrides):
    base = dict(
        data_dir=tmp_path / "data", secret_key="test-secret-key-for-jwt-signing-0123456789",
        password_hash_profile="fast", log_level="WARNING", login_limit_per_ip=10_000,
        register_limit_per_ip=10_000,
    )
    base.update(overrides)
    return load_settings(**base)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def container(settings):
    return build_container(settings, persistence="memory")


@pytest.fixture
async def client(aiohttp_client, container):
    app = create_app(container, run_background=False)
    # An API client: Bearer tokens only. Login's session cookie would otherwise make
    # every later "anonymous" request of the shared client a browser session
    # (tests/e2e/test_session.py covers the cookie with a browser-like client).
    return await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())


@dataclass
class Account:
    id: str
    username: str
    password: str
    token: str
    refresh_token: str
    personal_workspace_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def signup(client, name: str | None = None, *, admin_container=None) -> Account:
    """Register + log in through the API; ``admin_container`` makes the user a platform admin."""
    name = name or f"user{next(_counter)}"
    password = "correct horse battery"
    r = await client.post("/api/v1/auth/register", json={"username": name, "email": f"{name}@example.com", "password": password})
    assert r.status == 201, await r.text()
    user = await r.json()
    if admin_container is not None:
        await admin_container.admin_service().create_admin(name, f"{name}@example.com", password)
    r = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status == 200, await r.text()
    tokens = await r.json()
    r = await client.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    personal = next(w for w in (await r.json())["items"] if w["is_personal"])
    return Account(user["id"], name, password, tokens["access_token"], tokens["refresh_token"], personal["id"])


@pytest.fixture
def new_account(client):
    async def make(name: str | None = None, admin: bool = False) -> Account:
        return await signup(client, name, admin_container=client.server.app[_container_key()] if admin else None)

    return make


def _container_key():
    from remotegpu.entrypoints.http.keys import CONTAINER

    return CONTAINER
