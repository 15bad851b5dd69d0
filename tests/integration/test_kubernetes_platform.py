"""The platform on the Kubernetes runtime: JupyterLab through the app proxy, and the fleet
view of the cluster's nodes.

The platform (``remotegpu serve`` with its embedded agent on ``REMOTEGPU_RUNTIME=kubernetes``)
runs environments as Pods in the real test cluster (tests/support/kube_cluster.py). No
container runs there, so the kubelet stand-in gives this test's Pods an IP of their own in
127.0.0.0/8 and the test serves, on that IP and Jupyter's port 8888, what JupyterLab would
(HTTP and a websocket). The proxy finds the Pod's IP through the API server (a watch) and
dials it, as the servers do from inside a cluster (adapters/runtime/kube_apps.py).

It shows that a request through the app host reaches the Pod with the environment's own
Jupyter token and without the platform's cookies, and that authorization is checked on
every request: other users, anonymous callers and a user disabled after the handshake
never reach the Pod.

The fleet view: the one host that stands for the cluster lists the cluster's nodes as its
agent reports them (capacity, allocatable, allocated by the platform, GPU labels, Ready,
cordoned), following the real API server's changes.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import aiohttp
import pytest
from aiohttp import web

from remotegpu.application.environments.ports import LABEL_ENV_ID
from tests.integration.conftest import wait_running
from tests.support.app_hosts import app_origin, browser_session, console_login, handshake
from tests.support.kube_cluster import GPU_PRODUCT
from tests.support.live_server import free_port, live_server

ADMIN = ("admin", "admin-password-123")  # tests/support/live_server.py
PASSWORD = "correct horse battery"
MOUNT_IMAGE = "registry.example.com/remotegpu/platform:test"


class FakeJupyter:
    """What JupyterLab answers on the Pod's IP, recording every request it gets."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None

    async def start(self, ip: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/api/status", self.status)
        app.router.add_get("/api/kernels/k1/channels", self.channels)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, ip, port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _record(self, request: web.Request) -> bool:
        self.seen.append({"path": request.path, "authorization": request.headers.get("Authorization", ""),
                          "cookie": request.headers.get("Cookie", ""), "host": request.headers.get("Host", "")})
        return request.headers.get("Authorization") == f"token {self.token}"

    async def status(self, request: web.Request) -> web.Response:
        if not self._record(request):
            return web.json_response({"message": "Forbidden"}, status=403)
        return web.json_response({"started": "2026-01-01T00:00:00Z", "served_from": request.transport.get_extra_info("sockname")[0]})

    async def channels(self, request: web.Request) -> web.StreamResponse:
        if not self._record(request):
            return web.json_response({"message": "Forbidden"}, status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"echo:{msg.data}")
        return ws


def pod_of(core, namespace: str, env_id: str):
    pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_ENV_ID}={env_id}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


@pytest.fixture
def k8s_platform(kube_cluster, tmp_path):
    from kubernetes import client

    namespace = kube_cluster.create_namespace(f"apps-{uuid.uuid4().hex[:8]}")
    kube_cluster.kubelet.loopback_namespaces.add(namespace)
    core = client.CoreV1Api(kube_cluster.api_client())
    scope = f"apps{uuid.uuid4().hex[:6]}"
    port, gateway_port = free_port(), free_port()
    try:
        with live_server(tmp_path / "server", REMOTEGPU_HTTP_PORT=str(port), REMOTEGPU_KUBE_MOUNT_IMAGE=MOUNT_IMAGE,
                         REMOTEGPU_SSH_GATEWAY_PORT=str(gateway_port), REMOTEGPU_SSH_GATEWAY_BIND="127.0.0.1",
                         REMOTEGPU_SSH_GATEWAY_RECHECK_SECONDS="1",
                         REMOTEGPU_KUBE_PLATFORM_URL=f"http://127.0.0.1:{port}",
                         REMOTEGPU_RUNTIME="kubernetes", REMOTEGPU_AGENT_FAKE_GPUS="",
                         REMOTEGPU_KUBECONFIG=str(kube_cluster.kubeconfig), REMOTEGPU_KUBE_NAMESPACE=namespace,
                         REMOTEGPU_KUBE_STORAGE_CLASS=kube_cluster.storage_class, REMOTEGPU_DOCKER_SCOPE=scope,
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_AGENT_NAME=f"k8s-{scope}") as server:
            made: list[str] = []
            server.data_dir = tmp_path / "server"
            server.gateway_port = gateway_port
            yield server, core, namespace, made
            # Deleted through the platform while it runs: nothing of it stays in the cluster.
            admin = server.login(*ADMIN)
            for env_id in made:
                server.request("DELETE", f"/api/v1/environments/{env_id}", token=admin)
            deadline = time.monotonic() + 60
            while core.list_namespaced_persistent_volume_claim(namespace).items and time.monotonic() < deadline:
                time.sleep(0.3)
    finally:
        kube_cluster.kubelet.loopback_namespaces.discard(namespace)
        core.delete_namespace(namespace)


async def test_jupyter_of_a_kubernetes_environment_through_the_app_proxy(k8s_platform) -> None:
    server, core, namespace, made = k8s_platform
    port = int(server.url.rsplit(":", 1)[1])
    alice_token = server.signup("alice", PASSWORD)
    server.signup("bob", PASSWORD)
    code, ws = server.request("GET", "/api/v1/workspaces", token=alice_token)
    assert code == 200, ws
    code, env = server.request("POST", "/api/v1/environments", {
        "name": "k8s-apps", "workspace_id": ws["items"][0]["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1,
    }, token=alice_token)
    assert code == 202, env
    env_id = env["id"]
    made.append(env_id)
    await asyncio.to_thread(wait_running, server, alice_token, env_id)

    pod = pod_of(core, namespace, env_id)
    ip = pod.status.pod_ip
    assert ip.startswith("127.") and ip != "127.0.0.1", ip
    secret = core.read_namespaced_secret(f"{pod.metadata.name}-env", namespace)
    token = base64.b64decode(secret.data["REMOTEGPU_JUPYTER_TOKEN"]).decode()
    assert token
    apps = core.read_namespaced_service(f"{pod.metadata.name}-apps", namespace)
    assert apps.spec.type == "ClusterIP" and [p.target_port for p in apps.spec.ports] == [8888]
    assert apps.spec.selector["remotegpu.pod"] == pod.metadata.labels["remotegpu.pod"]  # the Service's one endpoint

    jupyter = FakeJupyter(token)
    await jupyter.start(ip, 8888)
    app = app_origin(env_id, port)
    try:
        async with browser_session() as alice:
            await console_login(alice, server.url, "alice", PASSWORD)
            await handshake(alice, server.url, env_id, port)
            async with alice.get(f"{app}/api/status") as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            assert body["served_from"] == ip  # the Pod's own address answered
            assert token not in str(dict(r.headers))
            (first,) = jupyter.seen
            assert first["authorization"] == f"token {token}"  # the environment's own token, set by the proxy
            assert "rgpu" not in first["cookie"] and first["host"] == f"{env_id}--jupyter.localhost:{port}"

            channel = await alice.ws_connect(f"{app}/api/kernels/k1/channels", headers={"Origin": app})
            await channel.send_str("hello")
            reply = await channel.receive(timeout=10)
            assert reply.data == "echo:hello"
            await channel.close()
            assert len(jupyter.seen) == 2

            # Others never reach the Pod: bob (no right to enter), anonymous callers, a bearer token.
            async with browser_session() as bob:
                await console_login(bob, server.url, "bob", PASSWORD)
                async with bob.get(f"{server.url}/api/v1/environments/{env_id}/apps/jupyter/authorize",
                                   allow_redirects=False) as r:
                    assert r.status == 404
                async with bob.get(f"{app}/api/status") as r:
                    assert r.status == 401
            async with browser_session() as anonymous:
                async with anonymous.get(f"{app}/api/status", headers={"Authorization": f"Bearer {alice_token}"}) as r:
                    assert r.status == 401
            assert len(jupyter.seen) == 2

            # Checked on every request (an admission is reused for at most ADMIT_TTL, 2 s):
            # alice, disabled after her handshake, is refused with the same app cookie.
            admin = server.login(*ADMIN)
            code, me = server.request("GET", "/api/v1/users/me", token=alice_token)
            assert code == 200, me
            code, body = server.request("PATCH", f"/api/v1/users/{me['id']}", {"is_active": False}, token=admin)
            assert code == 200, body
            deadline = time.monotonic() + 2 + 10  # ADMIT_TTL, and room for a loaded machine
            while True:
                async with alice.get(f"{app}/api/status") as r:
                    if r.status != 200:
                        assert r.status in (401, 404), await r.text()
                        break
                assert time.monotonic() < deadline, "a disabled user still reaches the Pod"
                await asyncio.sleep(0.2)
            reached = len(jupyter.seen)
            for _ in range(3):
                async with alice.get(f"{app}/api/status") as r:
                    assert r.status in (401, 404)
            assert len(jupyter.seen) == reached  # refused requests never reach the Pod
    finally:
        await jupyter.stop()


def host_nodes(server, admin: str) -> tuple[dict, dict[str, dict]]:
    code, hosts = server.request("GET", "/api/v1/hosts", token=admin)
    assert code == 200, hosts
    (host,) = hosts["items"]
    return host, {n["name"]: n for n in host["cluster_nodes"]}


def wait_nodes(server, admin: str, ok, what: str, timeout: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        host, nodes = host_nodes(server, admin)
        if ok(nodes):
            return nodes
        assert time.monotonic() < deadline, f"the fleet view never showed {what}: {nodes}"
        time.sleep(0.3)


async def test_the_fleet_view_lists_the_clusters_nodes_under_the_kubernetes_host(k8s_platform, kube_cluster) -> None:
    server, core, namespace, made = k8s_platform
    admin = server.login(*ADMIN)
    first, second = kube_cluster.nodes[:2]
    nodes = await asyncio.to_thread(wait_nodes, server, admin, lambda n: {first, second} <= set(n), "the nodes")
    host, _ = host_nodes(server, admin)
    assert host["runtime"] == "kubernetes" and len(host["gpus"]) == 4 * len(kube_cluster.nodes)
    for name in (first, second):
        node = nodes[name]
        assert (node["ready"], node["schedulable"], node["gpu_capacity"], node["gpu_allocatable"], node["gpu_allocated"]) \
            == (True, True, 4, 4, 0)
        assert node["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT and node["cpu"] == "64" and node["memory"] == "512Gi"
        assert "kubernetes.io/hostname" not in node["labels"]  # only GPU and topology labels are shown

    # An environment with a GPU: its node shows it allocated.
    user = server.signup("carol", PASSWORD)
    code, ws = server.request("GET", "/api/v1/workspaces", token=user)
    code, env = server.request("POST", "/api/v1/environments", {
        "name": "k8s-gpu", "workspace_id": ws["items"][0]["id"], "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1,
    }, token=user)
    assert code == 202, env
    made.append(env["id"])
    await asyncio.to_thread(wait_running, server, user, env["id"])
    bound = pod_of(core, namespace, env["id"]).spec.node_name
    await asyncio.to_thread(wait_nodes, server, admin, lambda n: n[bound]["gpu_allocated"] == 1, "the allocated GPU")

    # A node cordoned in the cluster turns unschedulable in the view (and its GPUs leave the inventory).
    other = second if bound == first else first
    core.patch_node(other, {"spec": {"unschedulable": True}})
    try:
        await asyncio.to_thread(wait_nodes, server, admin, lambda n: not n[other]["schedulable"], "the cordon")
        host, nodes = host_nodes(server, admin)
        assert nodes[other]["ready"] and nodes[bound]["schedulable"]
    finally:
        core.patch_node(other, {"spec": {"unschedulable": None}})


async def test_a_dataset_mount_is_an_init_container_that_fetches_the_version_with_the_environments_token(
        k8s_platform, tmp_path, monkeypatch) -> None:
    """The Pod: an emptyDir per version, an init container of the platform's image that fills
    it, a read-only mount at /datasets/<name>. No container runs in the test cluster, so the
    test runs the init container's own command line, with the environment's Secret as its
    variables (as ``envFrom`` gives them) and a temporary directory as its volume, against
    the platform: the version's files arrive, checked."""
    import hashlib
    import os
    import subprocess
    import sys

    from remotegpu.entrypoints import storage_cli

    server, core, namespace, made = k8s_platform
    monkeypatch.setattr(storage_cli, "STATE_DIR", tmp_path / "upload-state")
    admin = server.login(*ADMIN)
    code, workspaces = server.request("GET", "/api/v1/workspaces", token=admin)
    ws = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    code, ds = server.request("POST", "/api/v1/datasets", {"workspace_id": ws, "name": "corpus"}, token=admin)
    assert code == 201, ds
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "notes.txt").write_text("version one\n")
    (src / "sub" / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    async with aiohttp.ClientSession() as session:
        api = storage_cli.Api(server.url, admin, session)
        version = await storage_cli.push(api, "dataset", {"id": ds["id"]}, src, quiet=True)
    assert version["number"] == 1

    code, env = server.request("POST", "/api/v1/environments", {
        "name": "k8s-mounts", "workspace_id": ws, "cpu_cores": 1, "memory_gib": 1,
        "mounts": [{"kind": "dataset", "name": "corpus", "version": "latest"}],
    }, token=admin)
    assert code == 202, env
    made.append(env["id"])
    await asyncio.to_thread(wait_running, server, admin, env["id"])

    pod = pod_of(core, namespace, env["id"])
    (init,) = pod.spec.init_containers
    main = pod.spec.containers[0]
    assert init.image == MOUNT_IMAGE
    assert init.command[:3] == ["python3", "-m", "remotegpu.entrypoints.kube_mount_fetch"]
    assert init.command[3:6] == ["dataset", ds["id"], "1"]
    (fetch_mount,) = init.volume_mounts
    (data_mount,) = [m for m in main.volume_mounts if m.mount_path == "/datasets/corpus"]
    assert data_mount.read_only and data_mount.name == fetch_mount.name
    (volume,) = [v for v in pod.spec.volumes if v.name == data_mount.name]
    assert volume.empty_dir is not None
    assert init.resources.limits == init.resources.requests  # the Pod stays Guaranteed
    assert [e.secret_ref.name for e in init.env_from] == [f"{pod.metadata.name}-env"]
    # The agent did not download it into its own cache: the Pod does.
    assert not list((server.data_dir / "agent" / "storage-cache").glob("trees/*"))

    secret = core.read_namespaced_secret(f"{pod.metadata.name}-env", namespace)
    variables = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    variables.update({e.name: e.value for e in init.env or []})
    assert variables["REMOTEGPU_TOKEN"].startswith("rgpu_env_") and variables["REMOTEGPU_URL"] == server.url
    volume_dir = tmp_path / "emptydir"
    argv = [sys.executable if a == "python3" else a for a in init.command]
    argv[-1] = str(volume_dir)
    run = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=120,
                                  env={"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **variables})
    assert run.returncode == 0, run.stderr
    assert (volume_dir / "notes.txt").read_text() == "version one\n"
    assert hashlib.sha256((volume_dir / "sub" / "blob.bin").read_bytes()).digest() == \
        hashlib.sha256((src / "sub" / "blob.bin").read_bytes()).digest()

    # Another workspace's dataset is out of the environment token's reach.
    outsider = server.signup("dave", PASSWORD)
    code, ows = server.request("GET", "/api/v1/workspaces", token=outsider)
    code, other = server.request("POST", "/api/v1/datasets", {"workspace_id": ows["items"][0]["id"], "name": "secret"},
                                 token=outsider)
    assert code == 201, other
    argv[4] = other["id"]
    argv[-1] = str(tmp_path / "other")
    run = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=120,
                                  env={"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **variables})
    assert run.returncode == 1 and "404" in run.stderr, run.stderr


# --- SSH: the web terminal and the SSH gateway reach the Pod's sshd -------------------

SERVER_SECRET = "live-server-secret-key-0123456789abcdef"  # tests/support/live_server.py


def environment_private_keys(server, env_id: str) -> tuple[str, str]:
    """(host key, client key) private halves of ``env_id``, as only the server opens them:
    its database row and its secret (what the agent would install into the Pod)."""
    import sqlite3
    from types import SimpleNamespace

    from remotegpu.adapters.access.ssh_keys import Ed25519KeyPairs
    from remotegpu.adapters.security.sealer import AesGcmSealer
    from remotegpu.application.environments.credentials import EnvironmentCredentials

    with sqlite3.connect(server.data_dir / "remotegpu.db") as db:
        row = db.execute("SELECT ssh_host_key_sealed, ssh_client_key_sealed FROM environments WHERE id = ?", (env_id,)).fetchone()
    env = SimpleNamespace(id=env_id, ssh_host_key_sealed=row[0], ssh_client_key_sealed=row[1])
    creds = EnvironmentCredentials(Ed25519KeyPairs(), AesGcmSealer(SERVER_SECRET))
    return creds.host_private_key(env), creds.client_private_key(env)


class PodSshd:
    """A real SSH server (asyncssh) on the Pod's IP and port 22, standing for the Pod's
    sshd: the environment's own host key, and the keys the agent would put into its
    authorized_keys (the environment's client key, the entrants' keys). It records who
    logged in with which key, and answers a command with the address it was reached on
    and a shell by echoing lines."""

    def __init__(self, host_key: str, authorized: dict[str, str]) -> None:
        import asyncssh

        self.host_key = asyncssh.import_private_key(host_key)
        self.authorized = {" ".join(k.split()[:2]): name for name, k in authorized.items()}
        self.logins: list[str] = []
        self.server = None

    async def start(self, ip: str) -> None:
        import asyncssh

        sshd = self

        class Server(asyncssh.SSHServer):
            accepted = ""

            def begin_auth(self, username: str) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key) -> bool:  # asked per offer, maybe twice
                name = sshd.authorized.get(" ".join(key.export_public_key("openssh").decode().split()[:2]))
                if name is not None:
                    self.accepted = f"{username}:{name}"
                return name is not None

            def auth_completed(self) -> None:
                sshd.logins.append(self.accepted)

        self.server = await asyncssh.listen(ip, 22, server_host_keys=[self.host_key], server_factory=Server,
                                            process_factory=self.handle, encoding=None, reuse_address=True)

    async def handle(self, process) -> None:
        import re

        address = "%s:%s" % process.get_extra_info("sockname")[:2]
        if process.command and not process.term_type:  # ssh ENV@gateway COMMAND
            process.stdout.write(f"pod-sshd {address} ran {process.command}\n".encode())
            process.exit(0)
            return
        # A shell with a pty (the web terminal asks for one, with its login-shell command).
        process.stdout.write(f"pod-sshd {address} shell\r\n".encode())
        pending = b""
        while chunk := await process.stdin.read(1024):
            pending += chunk
            while (end := re.search(rb"[\r\n]", pending)) is not None:
                line, pending = pending[:end.start()].strip(), pending[end.end():]
                if line == b"exit":
                    process.exit(0)
                    return
                process.stdout.write(b"echo:" + line + b"\r\n")
        process.exit(0)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_the_web_terminal_and_the_ssh_gateway_reach_the_pods_sshd_at_its_ip(k8s_platform) -> None:
    """A Kubernetes environment's SSH is dialled at its Pod (IP, port 22), not at the host's
    address and NodePort (nothing listens there in this test): the web terminal's SSH
    bridge and both ways through the SSH gateway land in the sshd on the Pod's IP, with the
    environment's host key pinned; bob (no right to enter) gets 404 / is refused, and a
    deleted key is refused on its next login."""
    import asyncssh

    server, core, namespace, made = k8s_platform
    alice_token = server.signup("alice", PASSWORD)
    bob_token = server.signup("bob", PASSWORD)
    keys = {}
    for name, token in (("alice", alice_token), ("bob", bob_token)):
        key = asyncssh.generate_private_key("ssh-ed25519")
        code, body = server.request("POST", "/api/v1/users/me/ssh-keys", {
            "public_key": key.export_public_key("openssh").decode(), "name": f"{name}-key"}, token=token)
        assert code == 201, body
        keys[name] = (key, body["id"])
    code, ws = server.request("GET", "/api/v1/workspaces", token=alice_token)
    code, env = server.request("POST", "/api/v1/environments", {
        "name": "k8s-ssh", "workspace_id": ws["items"][0]["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1,
    }, token=alice_token)
    assert code == 202, env
    env_id = env["id"]
    made.append(env_id)
    env = await asyncio.to_thread(wait_running, server, alice_token, env_id)
    node_port = {p["purpose"]: p["port"] for p in env["ports"]}["ssh"]
    ip = pod_of(core, namespace, env_id).status.pod_ip
    assert ip.startswith("127.") and ip != "127.0.0.1", ip

    host_key, client_key = environment_private_keys(server, env_id)
    client_public = asyncssh.import_private_key(client_key).export_public_key("openssh").decode()
    alice_key, alice_key_id = keys["alice"]
    sshd = PodSshd(host_key, {"platform": client_public, "alice": alice_key.export_public_key("openssh").decode()})
    await sshd.start(ip)
    gateway = ("127.0.0.1", server.gateway_port)
    try:
        # The web terminal: the SSH bridge logs in at the Pod with the environment's client key.
        async with aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {alice_token}"}) as s:
            deadline = time.monotonic() + 30
            while True:
                try:
                    terminal = await s.ws_connect(f"/api/v1/environments/{env_id}/terminal")
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 409 and time.monotonic() < deadline, exc
                    await asyncio.sleep(0.5)
            async with terminal:
                seen = ""
                await terminal.send_str("hello-pod\r")
                while "echo:hello-pod" not in seen:
                    msg = await terminal.receive(timeout=20)
                    assert msg.type == aiohttp.WSMsgType.TEXT, (msg, seen)
                    seen += msg.data
                assert f"pod-sshd {ip}:22 shell" in seen
        assert sshd.logins == ["root:platform"]
        async with aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {bob_token}"}) as s:
            try:
                await s.ws_connect(f"/api/v1/environments/{env_id}/terminal")
                raise AssertionError("bob got a terminal")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 404

        # The gateway, ssh <env id>@gateway: it logs in at the Pod itself and relays the session.
        async with asyncssh.connect(*gateway, username=env_id, client_keys=[alice_key], known_hosts=None,
                                    config=[], agent_path=None) as conn:
            done = await conn.run("whereami", check=True)
        assert done.stdout == f"pod-sshd {ip}:22 ran whereami\n"
        assert sshd.logins[-1] == "root:platform"

        # The jump form, ssh -J: a plain stream to the Pod's sshd, alice logs in end to end.
        async with asyncssh.connect(*gateway, username=await_username(server, alice_token), client_keys=[alice_key],
                                    known_hosts=None, config=[], agent_path=None) as jump:
            async with asyncssh.connect(env_id, 22, tunnel=jump, username="root", client_keys=[alice_key],
                                        known_hosts=([sshd.host_key.convert_to_public()], [], []),
                                        config=[], agent_path=None) as inner:
                done = await inner.run("whereami", check=True)
        assert done.stdout == f"pod-sshd {ip}:22 ran whereami\n"
        assert sshd.logins[-1] == "root:alice"

        # Bob may not enter: refused at the gateway, both ways, and the Pod never sees him.
        bob_key = keys["bob"][0]
        logins = len(sshd.logins)
        try:
            async with asyncssh.connect(*gateway, username=env_id, client_keys=[bob_key], known_hosts=None,
                                        config=[], agent_path=None):
                raise AssertionError("bob logged in")
        except asyncssh.PermissionDenied:
            pass
        async with asyncssh.connect(*gateway, username=await_username(server, bob_token), client_keys=[bob_key],
                                    known_hosts=None, config=[], agent_path=None) as jump:
            try:
                await jump.open_connection(env_id, 22)
                raise AssertionError("bob's jump reached the Pod")
            except asyncssh.ChannelOpenError:
                pass
        # Alice's key deleted: her next login is refused (checked on every login).
        code, _ = server.request("DELETE", f"/api/v1/users/me/ssh-keys/{alice_key_id}", token=alice_token)
        assert code == 204
        try:
            async with asyncssh.connect(*gateway, username=env_id, client_keys=[alice_key], known_hosts=None,
                                        config=[], agent_path=None):
                raise AssertionError("a deleted key logged in")
        except asyncssh.PermissionDenied:
            pass
        assert len(sshd.logins) == logins

        # Nothing listens at the NodePort on this machine: that is not where any of this went.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", node_port)
    finally:
        await sshd.stop()


def await_username(server, token: str) -> str:
    code, me = server.request("GET", "/api/v1/users/me", token=token)
    assert code == 200, me
    return me["username"]
