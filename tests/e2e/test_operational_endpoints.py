from __future__ import annotations

import json
import subprocess
import sys

from openapi_spec_validator import validate

from tests.conftest import signup


async def test_health_ready_and_metrics(client):
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["database"] == "ok"
    acct = await signup(client)
    await client.get("/api/v1/users/me", headers=acct.headers)
    text = await (await client.get("/metrics")).text()
    assert 'remotegpu_http_requests_total{method="GET",route="/api/v1/users/me",status="200"}' in text
    assert "remotegpu_http_request_duration_seconds_bucket" in text


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
