from __future__ import annotations

import json
import subprocess
import sys

import aiohttp
import pytest
from openapi_spec_validator import validate

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup

METRICS_TOKEN = "scrape-token-0123456789abcdef"
USERS_ME_200 = 'remotegpu_http_requests_total{method="GET",route="/api/v1/users/me",status="200"}'


async def test_health_ready_and_metrics_for_an_admin(client, new_account):
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["database"] == "ok"
    acct = await signup(client)
    await client.get("/api/v1/users/me", headers=acct.headers)
    admin = await new_account(admin=True)
    r = await client.get("/metrics", headers=admin.headers)
    assert r.status == 200, await r.text()
    text = await r.text()
    assert USERS_ME_200 in text
    assert "remotegpu_http_request_duration_seconds_bucket" in text


async def test_metrics_are_not_public_nor_for_ordinary_users(client, new_account):
    """Without REMOTEGPU_METRICS_TOKEN only platform admins read /metrics."""
    assert (await client.get("/metrics")).status == 401
    user = await new_account()
    r = await client.get("/metrics", headers=user.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "admin_required"
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status == 401  # no token configured: a made-up one is nobody's
    assert (await client.get("/metrics", headers={"Authorization": "Basic eDp5"})).status == 401


@pytest.fixture
async def metrics_client(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, metrics_token=METRICS_TOKEN), persistence="memory")
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())


async def test_metrics_token_lets_a_scraper_in_and_nothing_else(metrics_client):
    acct = await signup(metrics_client)
    await metrics_client.get("/api/v1/users/me", headers=acct.headers)
    r = await metrics_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status == 200 and USERS_ME_200 in await r.text()
    assert (await metrics_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})).status == 401
    assert (await metrics_client.get("/metrics")).status == 401
    # The scrape token is no API credential.
    r = await metrics_client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status == 401


async def test_openapi_is_valid_3_1_and_covers_every_route(client):
    spec = await (await client.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    assert "/api/v1/workspaces/{workspace_id}/quota" in spec["paths"]
    assert set(spec["paths"]["/api/v1/workspaces/{workspace_id}/quota"]) == {"get", "put", "delete"}
    docs = await client.get("/api/docs")
    assert docs.status == 200 and "openapi.json" in await docs.text()


def test_cli_prints_the_same_openapi_document():
    out = subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "openapi"], capture_output=True, text=True, check=True)
    spec = json.loads(out.stdout)
    validate(spec)
    assert "/api/v1/auth/login" in spec["paths"]


async def test_an_admins_console_session_reads_metrics_and_a_users_does_not(aiohttp_client, container):
    browser = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.CookieJar(unsafe=True))
    admin = await signup(browser, "metricsadmin", admin_container=container)
    browser.session.cookie_jar.clear()
    own = {"Origin": f"http://{browser.host}:{browser.port}"}
    r = await browser.post("/api/v1/auth/session", json={"username": admin.username, "password": admin.password}, headers=own)
    assert r.status == 200
    assert (await browser.get("/metrics")).status == 200
    user = await signup(browser, "metricsuser")
    r = await browser.post("/api/v1/auth/session", json={"username": user.username, "password": user.password}, headers=own)
    assert r.status == 200  # the console session is now this user's
    assert (await browser.get("/metrics")).status == 403, user
