"""The platform as its registry's token issuer, on real Docker and Debian's docker-registry
started here with ``auth: token`` (realm: the platform's ``/api/v1/registry/token``,
rootcertbundle: the certificate of the platform's signing key): the registry holds no
password at all.

The platform pushes with tokens it signs itself (``remotegpu push-base-image``); the host's
agent pulls through its Docker engine, which trades the host's short-lived credential at
the realm for a token (``docker pull``), and pushes a save through its own client the same
way; a second host, with nothing of the workspace placed on it, gets no access to the
workspace's repository; expired, other-repository and wrong-action tokens are refused.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.adapters.images.registry_token import JwtRegistryTokenSigner, make_key_and_certificate
from remotegpu.adapters.runtime.docker_images import list_images
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import free_port, live_server
from tests.support.registry import TokenAuth, running_registry

IMAGE = "remotegpu/base:latest"
SECRET = "live-server-secret-key-0123456789abcdef"


@pytest.fixture(scope="module")
def docker():
    client = docker_with_image(IMAGE)
    yield client
    client.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """(key path, key PEM, certificate PEM), made by ``remotegpu registry-keygen``."""
    folder = tmp_path_factory.mktemp("registry-key")
    out = subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "registry-keygen", str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path = folder / "registry-token.key"
    assert f"REMOTEGPU_REGISTRY_TOKEN_KEY={path}" in out.stdout and oct(path.stat().st_mode & 0o777) == "0o600"
    return path, path.read_bytes(), (folder / "registry-token.crt").read_bytes()


@pytest.fixture(scope="module")
def platform(docker, keys, tmp_path_factory):
    """(server, registry): the registry's realm is the server's, so the port is chosen first."""
    port = free_port()
    key_path, _key, cert = keys
    scope = f"regtok{int(time.time())}"
    with running_registry(token=TokenAuth(f"http://127.0.0.1:{port}/api/v1/registry/token", cert)) as registry:
        try:
            with live_server(
                tmp_path_factory.mktemp("regtok"), REMOTEGPU_HTTP_PORT=str(port), REMOTEGPU_RUNTIME="docker",
                REMOTEGPU_AGENT_FAKE_GPUS="1xNVIDIA L4 24GB", REMOTEGPU_HEARTBEAT_SECONDS="1",
                REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
                REMOTEGPU_REGISTRY_URL=registry.address, REMOTEGPU_REGISTRY_TOKEN_KEY=str(key_path),
                REMOTEGPU_REGISTRY_TOKEN_TTL_SECONDS="60", REMOTEGPU_SECRET_KEY=SECRET,
            ) as srv:
                srv.token = srv.login("admin", "admin-password-123")
                code, ws = srv.request("GET", "/api/v1/workspaces", token=srv.token)
                srv.ws = ws["items"][0]["id"]
                deadline = time.monotonic() + 60
                while True:
                    code, hosts = srv.request("GET", "/api/v1/hosts", token=srv.token)
                    if code == 200 and any(h["status"] == "ready" and h.get("runtime") == "docker" for h in hosts["items"]):
                        break
                    assert time.monotonic() < deadline, f"the embedded agent's host did not show up: {hosts}"
                    time.sleep(0.3)
                yield srv, registry
        finally:
            remove_scope(docker, scope)
            for image in list_images(docker):
                for ref in image.tags:
                    if ref.startswith(registry.address + "/"):
                        docker.images.remove(ref, force=True)


def signer(keys) -> JwtRegistryTokenSigner:
    return JwtRegistryTokenSigner(keys[1], issuer="remotegpu", service="remotegpu-registry")


def registry_get(registry, path: str, token: str | None, method: str = "GET") -> tuple[int, str]:
    headers = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(registry.url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("WWW-Authenticate", "")


def realm(server, scopes: list[str], basic: tuple[str, str] | None = None, bearer: str | None = None) -> tuple[int, dict]:
    query = "&".join(["service=remotegpu-registry"] + [f"scope={s}" for s in scopes])
    req = urllib.request.Request(f"{server.url}/api/v1/registry/token?{query}")
    if basic:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def wait_env(server, env_id: str, status: str = "running", timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, env = server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)
        if code == 200 and env["status"] == status:
            return env
        if env["status"] == "failed":
            import shutil; shutil.copy(server.log_path, "/tmp/rg_server.log")
        assert code == 200 and env["status"] != "failed", env.get("status_message")
        assert time.monotonic() < deadline, f"environment did not reach {status}: {env}"
        time.sleep(0.3)


def wait_job(server, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, job = server.request("GET", f"/api/v1/image-jobs/{job_id}", token=server.token)
        assert code == 200, job
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", (job["error"], job["log"][-3000:])
            return job
        assert time.monotonic() < deadline, f"job did not finish: {job['status']} {job['progress']}"
        time.sleep(1)


def wait_gone(server, env_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.request("GET", f"/api/v1/environments/{env_id}", token=server.token)[0] != 404:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def pulled_events(server, env_id: str) -> bool:
    code, events = server.request("GET", f"/api/v1/environments/{env_id}/events?limit=100", token=server.token)
    return any("pulling image" in e["reason"] for e in events["items"])


def test_platform_pushes_and_the_agents_engine_pulls_with_tokens_from_the_realm(platform, docker, keys):
    server, registry = platform
    # The registry takes no password: anonymous and Basic callers are sent to the realm.
    code, challenge = registry_get(registry, "/v2/", None)
    assert code == 401 and f'realm="{server.url}/api/v1/registry/token"' in challenge, challenge

    # The platform pushes the base with a token it signs itself.
    env = {**os.environ, "REMOTEGPU_DATA_DIR": str(server.log_path.parent), "REMOTEGPU_REGISTRY_URL": registry.address,
           "REMOTEGPU_REGISTRY_TOKEN_KEY": str(keys[0]), "REMOTEGPU_LOG_LEVEL": "WARNING", "REMOTEGPU_SECRET_KEY": SECRET}
    out = subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "push-base-image"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    reference = out.stdout.strip().splitlines()[-1]
    assert reference == f"{registry.address}/remotegpu/platform/base:latest"
    pull_base = signer(keys).sign("test", [{"type": "repository", "name": "remotegpu/platform/base", "actions": ["pull"]}], 60)
    assert registry_get(registry, "/v2/remotegpu/platform/base/manifests/latest", pull_base)[0] == 200
    code, images = server.request("GET", "/api/v1/images?visibility=platform", token=server.token)
    base = next(i for i in images["items"] if i["reference"] == reference)

    # The host's engine pulls it: the agent hands it the host's credential, the engine
    # trades it at the realm for a pull token of that repository.
    docker.images.remove(reference)
    assert not list_images(docker, name=reference)
    code, env1 = server.request("POST", "/api/v1/environments", {"name": "from-platform", "workspace_id": server.ws,
                                "cpu_cores": 1, "memory_gib": 1, "image_id": base["id"]}, token=server.token)
    assert code == 202 and env1["image"] == reference, env1
    env1 = wait_env(server, env1["id"])
    assert pulled_events(server, env1["id"])
    assert list_images(docker, name=reference)

    # The agent saves it: its own client pushes the layer with a push token for the job's
    # target (the base's layers mounted from the platform repository: pull there).
    code, body = server.request("POST", f"/api/v1/environments/{env1['id']}/save-image",
                                {"name": "saved", "tag": "v1"}, token=server.token)
    assert code == 202, body
    wait_job(server, body["job"]["id"])
    code, saved = server.request("GET", f"/api/v1/images/{body['image']['id']}", token=server.token)
    assert saved["status"] == "ready" and saved["digest"].startswith("sha256:"), saved
    assert not list_images(docker, name=saved["reference"])  # the save keeps no copy here

    # Started from the workspace image: the engine pulls the workspace repository (the
    # host runs an environment of that workspace).
    code, env2 = server.request("POST", "/api/v1/environments", {"name": "from-saved", "workspace_id": server.ws,
                                "cpu_cores": 1, "memory_gib": 1, "image_id": saved["id"]}, token=server.token)
    assert code == 202, env2
    env2 = wait_env(server, env2["id"])
    assert pulled_events(server, env2["id"]) and list_images(docker, name=saved["reference"])

    # A build FROM the workspace image: the engine pulls the base and pushes the result
    # (`docker push`) with tokens for the job's target.
    code, body = server.request("POST", "/api/v1/images/builds", {
        "workspace_id": server.ws, "name": "built", "tag": "b1",
        "dockerfile": f"FROM {saved['reference']}\nRUN echo built > /opt/built.txt\n"}, token=server.token)
    assert code == 202, body
    wait_job(server, body["job"]["id"])
    code, built = server.request("GET", f"/api/v1/images/{body['image']['id']}", token=server.token)
    assert built["status"] == "ready", built
    built_path = built["reference"][len(registry.address) + 1:].rsplit(":", 1)[0]
    read_built = signer(keys).sign("test", [{"type": "repository", "name": built_path, "actions": ["pull"]}], 60)
    assert registry_get(registry, f"/v2/{built_path}/manifests/b1", read_built)[0] == 200

    # The server's own registry calls (manifest delete) sign their own tokens too.
    for e in (env1, env2):
        assert server.request("DELETE", f"/api/v1/environments/{e['id']}", token=server.token)[0] == 202
    for e in (env1, env2):
        wait_gone(server, e["id"])
    path = saved["reference"][len(registry.address) + 1:].rsplit(":", 1)[0]
    read_saved = signer(keys).sign("test", [{"type": "repository", "name": path, "actions": ["pull"]}], 60)
    assert registry_get(registry, f"/v2/{path}/manifests/v1", read_saved)[0] == 200
    assert server.request("DELETE", f"/api/v1/images/{saved['id']}", token=server.token)[0] == 204
    assert registry_get(registry, f"/v2/{path}/manifests/v1", read_saved)[0] == 404


def test_tokens_only_for_what_the_host_runs_and_refused_when_expired_or_for_another_repository(platform, keys):
    server, registry = platform
    workspace_repo = f"remotegpu/ws-{server.ws}/probe"
    # Nobody without a host credential: anonymous, a user (even a platform admin), a forgery.
    assert realm(server, ["repository:remotegpu/platform/base:pull"])[0] == 401
    assert realm(server, ["repository:remotegpu/platform/base:pull"], bearer=server.token)[0] == 401
    code, hosts = server.request("GET", "/api/v1/hosts", token=server.token)
    embedded = hosts["items"][0]["id"]
    code, body = realm(server, ["repository:remotegpu/platform/base:pull"], basic=(embedded, "v1.9999999999.00ff"))
    assert code == 401 and body["error"]["code"] == "invalid_registry_credential", body

    # A second host: its credential comes with its heartbeat reply.
    code, created = server.request("POST", "/api/v1/hosts", {"name": "bystander"}, token=server.token)
    assert code == 201, created
    report = {"gpus": [], "cpu_cores": 1, "memory_gib": 1, "disk_gib": 10, "runtime": "memory", "runtime_healthy": True,
              "fake_gpus": True, "observed": []}
    code, reg = server.request("POST", "/api/v1/agent/register", {"join_token": created["join_token"], "name": "bystander",
                                                                   "report": report})
    assert code == 201, reg
    code, reply = server.request("POST", "/api/v1/agent/heartbeat", report, token=reg["agent_token"])
    assert code == 200, reply
    address, user, password = reply["registry_auth"]
    assert address == registry.address and user == created["id"] and password.startswith("v1.")
    try:
        # Platform repositories: pull, never push.
        code, grant = realm(server, ["repository:remotegpu/platform/base:pull,push"], basic=(user, password))
        assert code == 200 and 0 < grant["expires_in"] <= 60, grant
        assert claims(grant["token"])["access"] == [
            {"type": "repository", "name": "remotegpu/platform/base", "actions": ["pull"]}]
        token = grant["token"]
        assert registry_get(registry, "/v2/remotegpu/platform/base/manifests/latest", token)[0] == 200
        code, why = registry_get(registry, "/v2/remotegpu/platform/base/blobs/uploads/", token, method="POST")
        assert code == 401 and "insufficient_scope" in why, why  # a pull token does not push
        # A token for one repository does not open another.
        code, why = registry_get(registry, f"/v2/{workspace_repo}/manifests/latest", token)
        assert code == 401 and "insufficient_scope" in why, why
        # A workspace's repository: nothing of that workspace runs on this host → an empty token.
        code, grant = realm(server, [f"repository:{workspace_repo}:pull"], basic=(user, password))
        assert code == 200 and claims(grant["token"])["access"] == [], grant
        assert registry_get(registry, f"/v2/{workspace_repo}/manifests/latest", grant["token"])[0] == 401
        # Expired (past the registry's 60 s leeway): refused, though signed by the right key.
        stale = signer(keys).sign(f"host:{user}", [{"type": "repository", "name": "remotegpu/platform/base",
                                                    "actions": ["pull"]}], 60,
                                  now=datetime.now(timezone.utc) - timedelta(minutes=5))
        code, why = registry_get(registry, "/v2/remotegpu/platform/base/manifests/latest", stale)
        assert code == 401 and "invalid_token" in why, why
        # Signed by another key: refused.
        other_key, _cert = make_key_and_certificate()
        forged = JwtRegistryTokenSigner(other_key, issuer="remotegpu", service="remotegpu-registry").sign(
            "x", [{"type": "repository", "name": "remotegpu/platform/base", "actions": ["pull"]}], 60)
        assert registry_get(registry, "/v2/remotegpu/platform/base/manifests/latest", forged)[0] == 401
    finally:
        assert server.request("DELETE", f"/api/v1/hosts/{created['id']}?force=true", token=server.token)[0] == 204
    # A deleted host's credential opens nothing any more.
    assert realm(server, ["repository:remotegpu/platform/base:pull"], basic=(user, password))[0] == 401
