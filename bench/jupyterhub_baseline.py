"""JupyterHub + DockerSpawner + configurable-http-proxy, as the baseline of bench/env_start.py.

``bench/jupyterhub_setup.sh`` installs them outside the repository (their own venv and
npm prefix). The hub runs with its defaults but for what a bench needs: a service token
with admin scopes (users and servers are made through the REST API, as an integration
would), the dummy authenticator, SQLite in a temporary directory, its API on the Docker
bridge's gateway so containers reach it.

DockerSpawner starts the *same* environment image, plus JupyterHub's single-user package
(``jupyterhub-singleuser`` is what it runs; the image gets it once, as a derived image
``remotegpu/bench-jupyterhub:<base image id>`` made with ``docker commit``), with the
same CPU and memory limits. Its containers run ``jupyterhub-singleuser`` alone (no
sshd): if anything, that favours the baseline.

"Ready" is measured as for RemoteGPU: from the spawn request (``POST
/hub/api/users/{name}/server``) until ``GET /user/{name}/api/status`` through the
proxy answers 200 — JupyterLab reached through the platform's public URL.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "bench" / "jupyterhub_setup.sh"
POLL_SECONDS = 0.02
READY_TIMEOUT = 120.0


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def install() -> Path:
    """The cache directory with the hub's venv, the proxy and the single-user wheels."""
    out = subprocess.run([str(SETUP)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench/jupyterhub_setup.sh failed:\n{out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def hub_image(base: str, cache: Path) -> str:
    """``base`` plus jupyterhub (no other change: what the image's own Jupyter start
    costs stays the same, rfc3987-syntax included or not as in ``base``)."""
    base_id = docker("image", "inspect", "-f", "{{.Id}}", base).split(":")[-1][:12]
    tag = f"remotegpu/bench-jupyterhub:{base_id}"
    if docker("image", "ls", "-q", tag):
        return tag
    had_rfc = docker("run", "--rm", "--entrypoint", "/opt/jupyter/bin/python", base, "-c",
                     "import importlib.util as u; print(u.find_spec('rfc3987_syntax') is not None)") == "True"
    name = f"rgpu-bench-hub-build-{secrets.token_hex(4)}"
    script = ("/opt/jupyter/bin/pip install -q --no-index --find-links /wheels jupyterhub"
              + ("" if had_rfc else " && /opt/jupyter/bin/pip uninstall -q -y rfc3987-syntax lark"))
    try:
        docker("run", "--name", name, "-v", f"{cache / 'wheels'}:/wheels:ro", "--entrypoint", "/bin/sh", base, "-c", script)
        entrypoint = docker("image", "inspect", "-f", "{{json .Config.Entrypoint}}", base)
        docker("commit", "--change", f"ENTRYPOINT {entrypoint}", "--change", "CMD []", name, tag)
    finally:
        docker("rm", "-f", name, check=False)
    return tag


class Hub:
    def __init__(self, url: str, token: str, process: subprocess.Popen, log_path: Path, prefix: str) -> None:
        self.url, self.token, self.process, self.log_path, self.prefix = url, token, process, log_path, prefix
        self.port = int(url.rsplit(":", 1)[1])

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw) if raw else {}
            except ValueError:
                return r.status, raw.decode("utf-8", "replace")
        finally:
            conn.close()

    def spawn(self, user: str) -> float:
        """Seconds from the spawn request until JupyterLab answers through the proxy."""
        code, body = self.request("POST", f"/hub/api/users/{user}")
        if code not in (201, 409):
            raise RuntimeError(f"hub: create user {user} answered {code}: {body}")
        t0 = time.perf_counter()
        code, body = self.request("POST", f"/hub/api/users/{user}/server")
        if code not in (201, 202):
            logs = subprocess.run(["docker", "logs", "--tail", "30", f"{self.prefix}-{user}"], capture_output=True, text=True)
            raise RuntimeError(f"hub: spawn answered {code}: {body}\n{logs.stdout}{logs.stderr}")
        deadline = t0 + READY_TIMEOUT
        checked = time.perf_counter()
        while time.perf_counter() < deadline:
            code, _ = self.request("GET", f"/user/{user}/api/status")
            if code == 200:
                return time.perf_counter() - t0
            if time.perf_counter() - checked > 0.5:  # a spawn the hub gave up on never gets ready
                checked = time.perf_counter()
                code, model = self.request("GET", f"/hub/api/users/{user}")
                if code == 200 and isinstance(model, dict) and not model.get("pending") and not model.get("servers"):
                    raise RuntimeError(f"hub: {user}'s spawn failed; log:\n{self.log_tail()}")
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"hub: {user}'s server not ready after {READY_TIMEOUT}s; log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        lines = [line for line in self.log_path.read_text().splitlines() if " 302 GET " not in line]
        return "\n".join(lines[-40:])

    def stop(self, user: str) -> None:
        self.request("DELETE", f"/hub/api/users/{user}/server")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, body = self.request("GET", f"/hub/api/users/{user}")
            if code == 200 and isinstance(body, dict) and not body.get("servers") and not body.get("pending"):
                break
            time.sleep(0.1)
        docker("rm", "-f", f"{self.prefix}-{user}", check=False)


@contextmanager
def jupyterhub(image: str, cpus: float, memory_bytes: int, scope: str) -> Iterator[Hub]:
    """A running hub (and its proxy) spawning ``image``; everything goes on exit."""
    cache = install()
    image = hub_image(image, cache)
    chp = cache / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
    gateway = docker("network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
    token = secrets.token_hex(24)
    prefix = f"rgpu-bench-hub-{scope}"
    from tests.support.live_server import free_port

    port, api_port, hub_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="rgpu-hub-") as tmp:
        config = Path(tmp) / "jupyterhub_config.py"
        config.write_text(f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://{gateway}:{hub_port}"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{"name": "bench", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = "{image}"
c.DockerSpawner.name_template = "{prefix}-{{username}}"
c.DockerSpawner.remove = {os.environ.get("RGPU_HUB_REMOVE", "True")}
c.DockerSpawner.cpu_limit = {cpus}
c.DockerSpawner.mem_limit = {memory_bytes}
c.DockerSpawner.extra_create_kwargs = {{"entrypoint": ["/usr/bin/env"]}}  # instead of the image's
c.DockerSpawner.cmd = ["/opt/jupyter/bin/jupyterhub-singleuser"]
c.Spawner.start_timeout = 120  # generous: on a busy machine the defaults (60 s, 30 s) fail spawns
c.Spawner.http_timeout = 120
c.Spawner.args = ["--allow-root"]  # the image runs as root, as RemoteGPU's environments do
""")
        log_path = Path(tmp) / "jupyterhub.log"
        log = open(log_path, "wb")
        env = {**os.environ, "PATH": f"{cache / 'venv' / 'bin'}:{os.environ.get('PATH', '')}",
               "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
        process = subprocess.Popen([str(cache / "venv" / "bin" / "jupyterhub"), "-f", str(config)], cwd=tmp, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        hub = Hub(f"http://127.0.0.1:{port}", token, process, log_path, prefix)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if hub.request("GET", "/hub/api/")[0] == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyterhub did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield hub
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()
            ids = docker("ps", "-aq", "--filter", f"name={prefix}-", check=False).split()
            if ids:
                docker("rm", "-f", *ids, check=False)
            if os.environ.get("REMOTEGPU_BENCH_KEEP_HUB_LOG"):
                shutil.copy(log_path, os.environ["REMOTEGPU_BENCH_KEEP_HUB_LOG"])
