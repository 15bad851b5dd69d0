"""deploy/compose/ stands the whole platform up on this machine's Docker engine, from
images built here (deploy/compose/build-images.sh: Debian packages in a debootstrap
rootfs, nothing pulled), and the core flow runs against it over HTTP through nginx:
the admin logs in, adds the Docker host (the compose `agent`, on the host network, with
fake GPUs), creates an environment, reaches its JupyterLab through nginx on the apps
wildcard host (HTTP and a websocket), stops, starts and deletes it. Two `serve`
replicas run behind nginx; Prometheus scrapes both, loaded the rules and found
Alertmanager; the registry answers its v2 API.

The stack runs under a project name, subnet and Docker scope of its own; afterwards
nothing of it is left (containers, volumes, networks, the agent's state directory)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import aiohttp
import pytest

from tests.integration.conftest import IMAGE
from tests.support.app_hosts import (
    app_origin,
    browser_session,
    console_login,
    handshake,
)
from tests.support.components import docker_with_image
from tests.support.compose_stack import (
    ADMIN_PASSWORD,
    GPU,
    Stack,
    compose_stack,
    env_status,
)


@pytest.fixture(scope="module")
def stack():
    docker = docker_with_image(IMAGE)
    with compose_stack(docker, IMAGE, replicas=2) as s:
        yield s


async def jupyter_through_nginx(s: Stack, env_id: str) -> None:
    async with browser_session() as session:
        await console_login(session, s.url, "admin", ADMIN_PASSWORD)
        await handshake(session, s.url, env_id, s.port, next_path="/api/status")
        origin = app_origin(env_id, s.port)
        deadline = time.monotonic() + 60
        while True:
            async with session.get(f"{origin}/api/status") as r:
                body = await r.text()
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, f"JupyterLab did not answer through nginx: {r.status} {body[:300]}\n{s.logs()}"
            await asyncio.sleep(0.5)
        assert "last_activity" in json.loads(body), body
        async with session.ws_connect(f"{origin}/api/events/subscribe", headers={"Origin": origin}) as ws_conn:
            assert not ws_conn.closed
        # A name that is neither the console's nor under the apps domain: nginx closes the connection.
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://unknown.example.test:{s.port}/api/status") as r:
                await r.read()


def test_core_flow_through_nginx_on_the_compose_stack(stack: Stack):
    s = stack
    # Two serve replicas behind nginx, both healthy, both scraped by Prometheus.
    ps = s.run("ps", "-q", "serve")
    assert len(ps.stdout.split()) == 2, ps.stdout
    code, ws = s.request("GET", "/api/v1/workspaces", token=s.token)
    assert code == 200, ws
    code, env = s.request("POST", "/api/v1/environments",
                          {"name": "smoke", "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "gpu_model": GPU,
                           "cpu_cores": 1, "memory_gib": 1}, token=s.token)
    assert code == 202, env
    env_id = env["id"]
    s.wait("running", lambda: env_status(s, env_id) == "running", timeout=120)

    # JupyterLab through nginx on the apps wildcard host: the browser's handshake, an
    # HTTP answer from Jupyter itself, and a websocket (Upgrade passed through nginx).
    asyncio.run(jupyter_through_nginx(s, env_id))

    code, _ = s.request("POST", f"/api/v1/environments/{env_id}/stop", token=s.token)
    assert code == 202
    s.wait("stopped", lambda: env_status(s, env_id) == "stopped", timeout=90)
    code, _ = s.request("POST", f"/api/v1/environments/{env_id}/start", {}, token=s.token)
    assert code == 202
    s.wait("running again", lambda: env_status(s, env_id) == "running", timeout=120)
    code, _ = s.request("DELETE", f"/api/v1/environments/{env_id}", token=s.token)
    assert code in (202, 204)
    s.wait("deleted", lambda: env_status(s, env_id) == "http 404", timeout=90)
    scoped = {"label": f"remotegpu.scope={s.scope}"}
    s.wait("the environment's container and disk removed",
           lambda: not s.docker.containers.list(all=True, filters=scoped) and not s.docker.volumes.list(filters=scoped),
           timeout=30)

    # Prometheus (the compose scrape config, DNS discovery of the replicas) sees both up,
    # loaded the rules and found Alertmanager.
    prometheus = f"http://127.0.0.1:{s.prometheus_port}"

    def both_up():
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?query=up%7Bjob%3D%22remotegpu%22%7D", timeout=10) as r:
            result = json.loads(r.read())["data"]["result"]
        return len(result) == 2 and all(x["value"][1] == "1" for x in result)

    s.wait("Prometheus scraping both replicas", both_up, timeout=60)
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as r:
        groups = {g["name"] for g in json.loads(r.read())["data"]["groups"]}
    assert {"remotegpu-service", "remotegpu-fleet"} <= groups

    def alertmanager_known():
        with urllib.request.urlopen(f"{prometheus}/api/v1/alertmanagers", timeout=10) as r:
            return [a["url"] for a in json.loads(r.read())["data"]["activeAlertmanagers"]]

    assert any(":9093/" in url for url in s.wait("Prometheus finding Alertmanager", alertmanager_known, timeout=60))
    # The registry answers the v2 API on its published port.
    with urllib.request.urlopen(f"http://127.0.0.1:{s.registry_port}/v2/", timeout=10) as r:
        assert r.status == 200 and r.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
