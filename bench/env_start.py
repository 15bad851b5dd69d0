"""Environment start: create → running through the API vs a raw ``docker run -d``.

Runs the real ``remotegpu serve`` (SQLite, embedded agent, Docker runtime, 8 fake GPUs,
its own Docker scope) and, in the same run, starts the same image with plain
``docker run -d``: same entrypoint (the image's), same CPU and memory limits, same
environment variables, same port bindings, a fresh named volume at /root/workspace.
The two alternate (API first on even repetitions, raw first on odd ones); every
container and volume is removed after each repetition and at the end, and that removal
is timed too: the API's DELETE until Docker holds neither the container nor the volume
(aim ≤ 2 s on an idle host), against `docker rm -f` + `docker volume rm`.

"Usable" is measured the same way for both: from the request (the POST, or launching
``docker run``) until the SSH port accepts a TCP connection and answers with its
``SSH-2.0`` banner — that is when a user can log in. Also shown: when the API first
reports ``running`` (its event stream), and when ``docker run -d`` returned.

The probe is the same for both and starts with the request (``docker run`` is not
waited for first). Each attempt gives up after 0.25 s: Docker's port proxy listens
before the container's network is wired, and a connection it accepts then can sit in
its SYN retransmission for a second — a stalled probe, not a late sshd; a fresh
attempt sees the banner as soon as sshd sends it.

    .venv/bin/python bench/env_start.py [--reps 10] [--jupyter-reps 10] [--concurrent 5] [--heartbeat 1]

``--heartbeat``: the agent's beat interval (REMOTEGPU_HEARTBEAT_SECONDS, default 5 s in
production). Between beats the agent long-polls the server for work
(``/api/v1/agent/wait``, in-process here), so a create reaches Docker at once and the
interval should no longer show in the API's time; give several values to check,
e.g. ``--heartbeat 1 5``. Aim (issue #3): API median ≤ 1.3× raw.

**JupyterLab ready** (issue #12): for the API, from the POST until JupyterLab's
``/api/status`` answers 200 *through the platform's URL* — the app host
``{env_id}--jupyter.localhost`` — after the browser handshake a click in the console
makes (console session → authorize → one-time ticket → app cookie), begun when the
console's event stream (``/api/v1/events/stream``) says ``running``: no polling of the
API. For the raw container, until its published Jupyter port answers with the token.
It is probed alongside SSH in the first phase (``--reps``), then alone in a second
(``--jupyter-reps``), where the baseline takes turns with the two others: **JupyterHub
+ DockerSpawner** (``bench/jupyterhub_baseline.py``; ``bench/jupyterhub_setup.sh``
installs them outside the repository) spawning the same image with the same limits,
from ``POST /hub/api/users/{name}/server`` until ``/user/{name}/api/status`` answers
200 through its proxy. Retries poll every 20 ms. Then ``--concurrent`` (5) of each
start at once (``--concurrent-rounds`` times); the host's CPU overcommit is raised so
they all fit. Aim: API ≤ 0.5× JupyterHub, one by one and concurrent. ``--no-hub``
skips the baseline.

The image: ``REMOTEGPU_BASE_IMAGE`` (default ``remotegpu/base:latest``), for all three.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.jupyterhub_baseline import jupyterhub  # noqa: E402
from tests.support.live_server import LiveServer, free_port, live_server  # noqa: E402

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
FAKE = "8xNVIDIA A100-SXM4-80GB"
BANNER_TIMEOUT = 120.0
PROBE_ATTEMPT_SECONDS = 0.25
POLL_SECONDS = 0.02  # every "ready" probe (Jupyter through the platform, raw, JupyterHub)
ADMIN = ("admin", "admin-password-123")


def ssh_banner_at(port: int, t0: float, timeout: float = BANNER_TIMEOUT) -> float:
    """Seconds from ``t0`` until 127.0.0.1:port answers ``SSH-2.0``.

    Docker's port proxy accepts connections before sshd listens (and then closes
    them), so an accepted TCP connection alone proves nothing: wait for the banner.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=PROBE_ATTEMPT_SECONDS) as s:
                s.settimeout(PROBE_ATTEMPT_SECONDS)
                data = b""
                while b"\n" not in data and len(data) < 256:
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"SSH-2.0"):
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no SSH banner on port {port} after {timeout}s")


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    found = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, value = header.split(";", 1)[0].partition("=")
        found[name.strip()] = value.strip()
    return found


def _get(port: int, host: str, path: str, cookies: dict[str, str], timeout: float = 30) -> tuple[int, dict[str, str], str]:
    """GET ``path`` from 127.0.0.1:port as ``host``: (status, cookies set, Location)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": host, "Accept": "application/json"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, _cookies(r), r.headers.get("Location", "")
    finally:
        conn.close()


class AppBrowser:
    """What a browser does to reach an environment's JupyterLab through the platform:
    a console session, then per environment the authorize → callback handshake that
    leaves an app cookie for ``{env_id}--jupyter.localhost``."""

    def __init__(self, srv: LiveServer, username: str, password: str) -> None:
        self.port = int(srv.url.rsplit(":", 1)[1])
        self.console_host = f"127.0.0.1:{self.port}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", "/api/v1/auth/session", body=json.dumps({"username": username, "password": password}),
                     headers={"Content-Type": "application/json", "Origin": srv.url})
        r = conn.getresponse()
        r.read()
        conn.close()
        if r.status != 200:
            raise RuntimeError(f"console login answered {r.status}")
        self.session = _cookies(r)

    def app_host(self, env_id: str) -> str:
        return f"{env_id}--jupyter.localhost:{self.port}"

    def jupyter_ready(self, env_id: str, t0: float, timeout: float = BANNER_TIMEOUT) -> float:
        """Seconds from ``t0`` until ``/api/status`` answers 200 on the app host: the
        handshake (authorize → ticket → app cookie), then ``/api/status`` (the proxy
        holds a request while JupyterLab does not listen yet; a 502 is asked again).
        Call it once the environment runs (authorize answers 409 before; it is tried
        again too)."""
        deadline = time.perf_counter() + timeout
        authorize = f"/api/v1/environments/{env_id}/apps/jupyter/authorize?next=%2Fapi%2Fstatus"
        while True:
            code, _, location = _get(self.port, self.console_host, authorize, self.session)
            if code == 302:
                break
            if code != 409 or time.perf_counter() > deadline:
                raise RuntimeError(f"authorize of {env_id} answered {code}")
            time.sleep(POLL_SECONDS)
        callback = location.split(self.app_host(env_id), 1)[1]
        code, app_cookies, _ = _get(self.port, self.app_host(env_id), callback, {})
        if code != 302 or not app_cookies:
            raise RuntimeError(f"callback of {env_id} answered {code}")
        while time.perf_counter() < deadline:
            code, _, _ = _get(self.port, self.app_host(env_id), "/api/status", app_cookies)
            if code == 200:
                return time.perf_counter() - t0
            if code not in (502, 503, 504):
                raise RuntimeError(f"/api/status of {env_id} through the platform answered {code}")
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"JupyterLab of {env_id} did not answer through the platform after {timeout}s")


def jupyter_at(port: int, token: str, t0: float, timeout: float = BANNER_TIMEOUT) -> float:
    """Seconds from ``t0`` until 127.0.0.1:port answers ``/api/status`` 200 (the raw container)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_ATTEMPT_SECONDS)
        try:
            conn.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"no JupyterLab on port {port} after {timeout}s")


class EnvironmentEvents:
    """The console's event stream (``/api/v1/events/stream``): when each environment was
    first seen ``running``, as a browser learns it — no polling load on the server. An
    environment the stream has not reported yet is looked up every half second too (the
    stream may have been reconnecting)."""

    def __init__(self, srv: LiveServer, token: str) -> None:
        self.srv, self.token = srv, token
        self.port = int(srv.url.rsplit(":", 1)[1])
        self.running: dict[str, float] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._conn: http.client.HTTPConnection | None = None
        self._connect()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _connect(self) -> http.client.HTTPResponse:
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=None)
        self._conn.request("GET", "/api/v1/events/stream",
                           headers={"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"})
        self._response = self._conn.getresponse()
        if self._response.status != 200:
            raise RuntimeError(f"event stream answered {self._response.status}")
        return self._response

    def _read(self) -> None:
        while not self._closed:
            data: list[str] = []
            try:
                for raw in self._response:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        self._seen(json.loads("".join(data)))
                        data = []
            except (OSError, ValueError, http.client.HTTPException):
                pass
            if not self._closed:  # the server ended it (it does after 15 minutes): again
                time.sleep(0.2)
                try:
                    self._connect()
                except (OSError, RuntimeError, http.client.HTTPException):
                    pass

    def _seen(self, payload: dict) -> None:
        env = payload.get("environment") or {}
        if payload.get("type") == "environment" and env.get("status") == "running":
            with self._cond:
                self.running.setdefault(env["id"], time.perf_counter())
                self._cond.notify_all()

    def wait_running(self, env_id: str, timeout: float = BANNER_TIMEOUT) -> float:
        """The perf_counter() instant ``env_id`` was first seen running."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._cond:
                if self._cond.wait_for(lambda: env_id in self.running, timeout=0.5):
                    return self.running[env_id]
            code, body = self.srv.request("GET", f"/api/v1/environments/{env_id}", token=self.token)
            if code == 200 and body["status"] == "running":
                with self._cond:
                    return self.running.setdefault(env_id, time.perf_counter())
            if code == 200 and body["status"] == "failed":
                raise RuntimeError(f"environment {env_id} failed: {body.get('status_message')}")
        raise RuntimeError(f"environment {env_id} never reported running")

    def close(self) -> None:
        self._closed = True
        try:
            if self._conn is not None and self._conn.sock is not None:
                self._conn.sock.shutdown(2)
        except OSError:
            pass


class ApiRunner:
    def __init__(self, srv: LiveServer, token: str, workspace_id: str, browser: AppBrowser, events: EnvironmentEvents):
        self.srv, self.token, self.ws, self.browser, self.events = srv, token, workspace_id, browser, events

    def run(self, i: int, *, ssh: bool = True) -> dict:
        """Seconds from the POST: accepted, running (the event stream said so), ssh
        (banner; unless ``ssh`` is False), jupyter (through the platform's URL, the
        handshake begun once running was seen, as a click in the console would); and
        the environment's ``id``."""
        t0 = time.perf_counter()
        code, env = self.srv.request(
            "POST", "/api/v1/environments",
            {"name": f"bench-{i}", "workspace_id": self.ws, "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1},
            token=self.token,
        )
        accepted = time.perf_counter() - t0
        if code != 202 or env["status"] != "starting":
            raise RuntimeError(f"create answered {code}: {env}")
        ssh_port = next(p["port"] for p in env["ports"] if p["purpose"] == "ssh")
        out: dict = {"accepted": accepted, "id": env["id"]}
        errors: list[BaseException] = []

        def jupyter() -> None:
            try:
                out["running"] = self.events.wait_running(env["id"]) - t0
                out["jupyter"] = self.browser.jupyter_ready(env["id"], t0)
            except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
                errors.append(exc)

        thread = threading.Thread(target=jupyter)
        thread.start()
        if ssh:
            out["ssh"] = ssh_banner_at(ssh_port, t0)
        thread.join()
        if errors:
            raise errors[0]
        return out

    def remove(self, env_id: str) -> float:
        """DELETE, then wait until the API answers 404 and Docker has neither the container
        nor the volume; returns seconds from the request until Docker had neither."""
        t0 = time.monotonic()
        code, body = self.srv.request("DELETE", f"/api/v1/environments/{env_id}", token=self.token)
        if code != 202:
            raise RuntimeError(f"delete answered {code}: {body}")
        deadline = t0 + 60
        docker_gone = None
        while time.monotonic() < deadline:
            if docker_gone is None and not docker("ps", "-aq", "--filter", f"label=remotegpu.env_id={env_id}") \
                    and not docker("volume", "ls", "-q", "--filter", f"label=remotegpu.env_id={env_id}"):
                docker_gone = time.monotonic() - t0
            if docker_gone is not None and self.srv.request("GET", f"/api/v1/environments/{env_id}", token=self.token)[0] == 404:
                return docker_gone
            time.sleep(0.05)
        raise RuntimeError(f"environment {env_id} was not removed")


class RawRunner:
    """``docker run -d`` with what the API's container got: env, limits, port bindings."""

    def __init__(self, scope: str, template: dict):
        self.scope = scope
        config, host = template["Config"], template["HostConfig"]
        self.env = [e for e in config["Env"] if not e.startswith("PATH=")]
        self.jupyter_token = next((e.split("=", 1)[1] for e in self.env if e.startswith("REMOTEGPU_JUPYTER_TOKEN=")), "")
        self.cpus = host["NanoCpus"] / 1e9
        self.memory = host["Memory"]
        # container port → bind address, as the runtime published them (SSH public, Jupyter private)
        self.bindings = {k: v[0]["HostIp"] or "0.0.0.0" for k, v in (host["PortBindings"] or {}).items() if v}
        if "22/tcp" not in self.bindings:
            raise RuntimeError(f"the API's container publishes no SSH port: {host['PortBindings']}")
        if "8888/tcp" not in self.bindings:
            raise RuntimeError(f"the API's container publishes no Jupyter port: {host['PortBindings']}")
        if config.get("Entrypoint") != docker_image_entrypoint() or host.get("Init"):
            raise RuntimeError("the API's container does not use the image's entrypoint as is")

    def run(self, i: int, *, ssh: bool = True) -> dict:
        """Seconds from launching ``docker run``: returned, ssh (banner; unless ``ssh``
        is False), jupyter (its published port answers); and the container's ``name``."""
        name = f"rgpu-bench-raw-{self.scope}-{i}"
        ports = {cport: free_port() for cport in self.bindings}
        cmd = ["docker", "run", "-d", "--name", name, "--hostname", f"raw-{i}", "--label", f"remotegpu.scope={self.scope}",
               "--cpus", f"{self.cpus:g}", "--memory", f"{self.memory}b", "-v", f"{name}:/root/workspace"]
        for cport, hport in ports.items():
            cmd += ["-p", f"{self.bindings[cport]}:{hport}:{cport.split('/')[0]}"]
        for e in self.env:
            cmd += ["-e", e]
        cmd.append(IMAGE)
        t0 = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out: dict = {"name": name}
        waiter = threading.Thread(target=lambda: (process.wait(), out.__setitem__("returned", time.perf_counter() - t0)))
        waiter.start()
        jupyter = threading.Thread(target=lambda: out.__setitem__("jupyter", jupyter_at(ports["8888/tcp"], self.jupyter_token, t0)))
        jupyter.start()
        if ssh:
            out["ssh"] = ssh_banner_at(ports["22/tcp"], t0)  # probing from the request on, like the API's
        waiter.join()
        jupyter.join()
        if process.returncode != 0:
            raise RuntimeError(f"docker run failed: {process.stderr.read().decode()[:500]}")
        if "jupyter" not in out:
            raise RuntimeError(f"raw container {name}: JupyterLab never answered")
        return out

    @staticmethod
    def remove(name: str) -> float:
        t0 = time.monotonic()
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", name, check=False)
        return time.monotonic() - t0


def docker_image_entrypoint():
    return json.loads(docker("image", "inspect", IMAGE, "--format", "{{json .Config.Entrypoint}}"))


def cleanup(scope: str) -> None:
    """Containers, volumes, workspace networks and firewall rules of ``scope``."""
    from tests.support.components import docker_client, remove_scope

    remove_scope(docker_client(), scope)
    vols = docker("volume", "ls", "-q", "--filter", f"name=rgpu-bench-raw-{scope}-", check=False).split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


def at_once(n: int, work) -> list:
    """``work(k)`` for k in 0..n-1, all started together; their results in order."""
    results: list = [None] * n
    errors: list[BaseException] = []
    gate = threading.Barrier(n)

    def one(k: int) -> None:
        try:
            gate.wait()
            results[k] = work(k)
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


ROWS = ("api_accepted", "api_running", "api_ssh", "api_jupyter_ssh", "api_delete", "raw_returned", "raw_ssh",
        "raw_jupyter_ssh", "raw_delete", "api_jupyter", "raw_jupyter", "hub_jupyter", "c_api_jupyter", "c_raw_jupyter",
        "c_hub_jupyter")


def rotated(kinds: list[str], i: int) -> list[str]:
    return kinds[i % len(kinds):] + kinds[: i % len(kinds)]


def bench(heartbeat: float, reps: int, jupyter_reps: int, concurrent: int, rounds: int, with_hub: bool) -> dict:
    """Three phases on one server: SSH (+ Jupyter) of the API vs raw, ``reps`` times;
    JupyterLab ready alone (no SSH probe) of the API, raw and JupyterHub, ``jupyter_reps``
    times; then ``concurrent`` of each at once, ``rounds`` times. Who goes first rotates."""
    scope = f"bench{uuid.uuid4().hex[:8]}"
    rows: dict[str, list[float]] = {k: [] for k in ROWS}
    events = None
    try:
        with tempfile.TemporaryDirectory() as tmp, live_server(
            Path(tmp), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE, REMOTEGPU_DOCKER_SCOPE=scope,
            REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_HEARTBEAT_SECONDS=str(heartbeat),
            REMOTEGPU_LOG_LEVEL="WARNING", REMOTEGPU_BASE_IMAGE=IMAGE, REMOTEGPU_ACCESS_TOKEN_TTL_SECONDS="86400",
        ) as srv:
            token = srv.login(*ADMIN)
            ws = srv.request("GET", "/api/v1/workspaces", token=token)[1]["items"][0]["id"]
            deadline = time.monotonic() + 30
            while sum(t["free"] for t in srv.request("GET", "/api/v1/gpu-types", token=token)[1]["items"]) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the embedded agent did not register")
                time.sleep(0.2)
            if concurrent > 1:  # whole cores per environment: let `concurrent` 1-core ones fit this host
                host = srv.request("GET", "/api/v1/hosts", token=token)[1]["items"][0]
                ratio = min(10.0, max(1.0, (concurrent + 1) / max(1, host["cpu_cores"])))
                code, body = srv.request("PATCH", f"/api/v1/hosts/{host['id']}", {"cpu_overcommit": ratio}, token=token)
                if code != 200:
                    raise RuntimeError(f"setting the host's CPU overcommit answered {code}: {body}")
            events = EnvironmentEvents(srv, token)
            api = ApiRunner(srv, token, ws, AppBrowser(srv, *ADMIN), events)
            # Warm-up (not counted): also gives the raw runs their template.
            first = api.run(-1)
            template = docker_inspect(f"rgpu-env-{first['id']}")
            api.remove(first["id"])
            raw = RawRunner(scope, template)
            raw.remove(raw.run(-1)["name"])
            for i in range(reps):  # 1. SSH banner (and JupyterLab, probed at the same time)
                for which in rotated(["api", "raw"], i):
                    if which == "api":
                        r = api.run(i)
                        rows["api_delete"].append(api.remove(r["id"]))
                        for k in ("accepted", "running", "ssh"):
                            rows[f"api_{k}"].append(r[k])
                        rows["api_jupyter_ssh"].append(r["jupyter"])
                    else:
                        r = raw.run(i)
                        rows["raw_delete"].append(raw.remove(r["name"]))
                        rows["raw_returned"].append(r["returned"])
                        rows["raw_ssh"].append(r["ssh"])
                        rows["raw_jupyter_ssh"].append(r["jupyter"])
                print(f"  heartbeat {heartbeat:g}s SSH rep {i + 1}/{reps}: api running {rows['api_running'][-1]:.2f}s "
                      f"ssh {rows['api_ssh'][-1]:.2f}s jupyter {rows['api_jupyter_ssh'][-1]:.2f}s; raw ssh "
                      f"{rows['raw_ssh'][-1]:.2f}s jupyter {rows['raw_jupyter_ssh'][-1]:.2f}s", file=sys.stderr)
            hub_cm = jupyterhub(IMAGE, raw.cpus, raw.memory, scope) if with_hub else nullcontext(None)
            with hub_cm as hub:
                kinds = ["api", "raw"] + (["hub"] if hub is not None else [])
                if hub is not None:
                    hub.spawn("warmup")
                    hub.stop("warmup")
                for i in range(jupyter_reps):  # 2. JupyterLab ready, one at a time
                    for which in rotated(kinds, i):
                        if which == "api":
                            r = api.run(100 + i, ssh=False)
                            api.remove(r["id"])
                            rows["api_jupyter"].append(r["jupyter"])
                        elif which == "raw":
                            r = raw.run(100 + i, ssh=False)
                            raw.remove(r["name"])
                            rows["raw_jupyter"].append(r["jupyter"])
                        else:
                            rows["hub_jupyter"].append(hub.spawn(f"seq{i}"))
                            hub.stop(f"seq{i}")
                    hub_cell = f"; hub {rows['hub_jupyter'][-1]:.2f}s" if hub is not None else ""
                    print(f"  heartbeat {heartbeat:g}s Jupyter rep {i + 1}/{jupyter_reps}: api {rows['api_jupyter'][-1]:.2f}s; "
                          f"raw {rows['raw_jupyter'][-1]:.2f}s{hub_cell}", file=sys.stderr)
                for rnd in range(rounds if concurrent > 1 else 0):  # 3. `concurrent` at once
                    for which in rotated(kinds, rnd):
                        if which == "api":
                            results = at_once(concurrent, lambda k, rnd=rnd: api.run(1000 + rnd * concurrent + k, ssh=False))
                            at_once(concurrent, lambda k: api.remove(results[k]["id"]))
                            rows["c_api_jupyter"] += [r["jupyter"] for r in results]
                        elif which == "raw":
                            results = at_once(concurrent, lambda k, rnd=rnd: raw.run(1000 + rnd * concurrent + k, ssh=False))
                            at_once(concurrent, lambda k: raw.remove(results[k]["name"]))
                            rows["c_raw_jupyter"] += [r["jupyter"] for r in results]
                        else:
                            names = [f"c{rnd}x{k}" for k in range(concurrent)]
                            rows["c_hub_jupyter"] += at_once(concurrent, lambda k: hub.spawn(names[k]))
                            at_once(concurrent, lambda k: hub.stop(names[k]))
                    hub_cell = f"; hub max {max(rows['c_hub_jupyter'][-concurrent:]):.2f}s" if hub is not None else ""
                    print(f"  heartbeat {heartbeat:g}s {concurrent} at once, round {rnd + 1}/{rounds}: api max "
                          f"{max(rows['c_api_jupyter'][-concurrent:]):.2f}s; raw max "
                          f"{max(rows['c_raw_jupyter'][-concurrent:]):.2f}s{hub_cell}", file=sys.stderr)
            if "Traceback" in srv.log_path.read_text():
                raise RuntimeError(f"the server logged an error:\n{srv.log_path.read_text()[-3000:]}")
    finally:
        if events is not None:
            events.close()
        cleanup(scope)
    return rows


def docker_inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, nargs="+", default=[1.0],
                        help="agent beat interval(s) in seconds to run the API side with")
    parser.add_argument("--jupyter-reps", type=int, default=10, help="JupyterLab-ready repetitions (API, raw, JupyterHub)")
    parser.add_argument("--concurrent", type=int, default=5, help="environments started at once (0: none)")
    parser.add_argument("--concurrent-rounds", type=int, default=2)
    parser.add_argument("--no-hub", action="store_true", help="no JupyterHub baseline")
    args = parser.parse_args()
    # Killed (timeout, kill): unwind, so the server, the hub and every container go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        docker("image", "inspect", IMAGE)
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise SystemExit(f"bench/env_start.py needs a Docker daemon and {IMAGE} (make image)") from None

    load_before = os.getloadavg()
    results = [(hb, bench(hb, args.reps, args.jupyter_reps, args.concurrent, args.concurrent_rounds, not args.no_hub)) for hb in args.heartbeat]
    load_after = os.getloadavg()
    med = statistics.median

    def cell(xs: list[float]) -> str:
        if not xs:
            return "-"
        return f"{med(xs):.2f} ({statistics.quantiles(xs, n=10)[-1]:.2f})" if len(xs) > 1 else f"{xs[0]:.2f}"

    print(f"\nEnvironment start, {args.reps} repetitions each, rotating order, {os.cpu_count()} CPUs, "
          f"{IMAGE}, 1 CPU / 1 GiB / 1 fake GPU; medians (p90) in seconds; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'heartbeat':>9}  {'raw run -d':>14}  {'raw SSH':>14}  {'API 202':>8}  {'API running':>14}  {'API SSH':>14}  {'SSH ratio':>9}"
          f"  {'raw Jupyter':>14}  {'API Jupyter':>14}  {'raw rm -f':>14}  {'API delete':>14}")
    for hb, r in results:
        ratio = med(r["api_ssh"]) / med(r["raw_ssh"])
        print(f"{hb:>8g}s  {cell(r['raw_returned']):>14}  {cell(r['raw_ssh']):>14}  {med(r['api_accepted']):>8.3f}  "
              f"{cell(r['api_running']):>14}  {cell(r['api_ssh']):>14}  {ratio:>8.2f}x"
              f"  {cell(r['raw_jupyter_ssh']):>14}  {cell(r['api_jupyter_ssh']):>14}"
              f"  {cell(r['raw_delete']):>14}  {cell(r['api_delete']):>14}")
    print("\nratio = median API create→SSH banner / median raw `docker run -d`→SSH banner (aim ≤ 1.3x); Jupyter = until"
          " /api/status answers 200 (API: through the platform URL), probed in the same runs as SSH")
    print("API delete = DELETE request → neither the container nor the volume left in Docker (aim ≤ 2 s);"
          " raw rm -f = `docker rm -f` + `docker volume rm` of the same")

    print(f"\nJupyterLab ready (/api/status 200) without SSH probes, medians (p90) in seconds; {args.jupyter_reps} one at a "
          f"time, then {args.concurrent} at once ({args.concurrent_rounds} rounds)")
    print(f"{'heartbeat':>9}  {'':>10}  {'raw run -d':>14}  {'JupyterHub':>14}  {'API (platform URL)':>18}  {'API/Hub':>8}  {'max API/Hub':>11}")
    for hb, r in results:
        for label, prefix in (("one by one", ""), (f"{args.concurrent} at once", "c_")):
            api_j, hub_j = r[f"{prefix}api_jupyter"], r[f"{prefix}hub_jupyter"]
            ratio = f"{med(api_j) / med(hub_j):.2f}x" if api_j and hub_j else "-"
            worst = f"{max(api_j) / max(hub_j):.2f}x" if api_j and hub_j else "-"
            print(f"{hb:>8g}s  {label:>10}  {cell(r[f'{prefix}raw_jupyter']):>14}  {cell(hub_j):>14}  {cell(api_j):>18}"
                  f"  {ratio:>8}  {worst:>11}")
    print("\nAPI = POST /api/v1/environments → JupyterLab's /api/status answering through {env_id}--jupyter.localhost"
          " (the handshake begun when the event stream says running); JupyterHub = POST /hub/api/users/NAME/server →"
          " /user/NAME/api/status through its proxy, DockerSpawner, same image (+ jupyterhub) and limits; raw ="
          " `docker run -d` → the published port. Aim: API/Hub ≤ 0.5x")


if __name__ == "__main__":
    main()
