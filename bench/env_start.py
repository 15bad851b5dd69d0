"""Environment start: create → running through the API vs a raw ``docker run -d``.

Runs the real ``remotegpu serve`` (SQLite, embedded agent, Docker runtime, 4 fake GPUs,
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
reports ``running`` (polled every 50 ms), and when ``docker run -d`` returned.

The probe is the same for both and starts with the request (``docker run`` is not
waited for first). Each attempt gives up after 0.25 s: Docker's port proxy listens
before the container's network is wired, and a connection it accepts then can sit in
its SYN retransmission for a second — a stalled probe, not a late sshd; a fresh
attempt sees the banner as soon as sshd sends it.

    .venv/bin/python bench/env_start.py [--reps 20] [--heartbeat 1]

``--heartbeat``: the agent's beat interval (REMOTEGPU_HEARTBEAT_SECONDS, default 5 s in
production). Between beats the agent long-polls the server for work
(``/api/v1/agent/wait``, in-process here), so a create reaches Docker at once and the
interval should no longer show in the API's time; give several values to check,
e.g. ``--heartbeat 1 5``. Aim (issue #3): API median ≤ 1.3× raw.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live_server import LiveServer, free_port, live_server  # noqa: E402

IMAGE = "remotegpu/base:latest"
FAKE = "4xNVIDIA A100-SXM4-80GB"
BANNER_TIMEOUT = 120.0
PROBE_ATTEMPT_SECONDS = 0.25


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


class ApiRunner:
    def __init__(self, srv: LiveServer, token: str, workspace_id: str, scope: str):
        self.srv, self.token, self.ws, self.scope = srv, token, workspace_id, scope

    def run(self, i: int) -> tuple[float, float, float, str]:
        """(accepted, status running, SSH banner) seconds and the environment's id."""
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
        running: list[float] = []

        def poll() -> None:
            deadline = time.perf_counter() + BANNER_TIMEOUT
            while time.perf_counter() < deadline:
                code, body = self.srv.request("GET", f"/api/v1/environments/{env['id']}", token=self.token)
                if code == 200 and body["status"] == "running":
                    running.append(time.perf_counter() - t0)
                    return
                if code == 200 and body["status"] == "failed":
                    return
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        banner = ssh_banner_at(ssh_port, t0)
        poller.join()
        if not running:
            raise RuntimeError(f"environment {env['id']} never reported running")
        return accepted, running[0], banner, env["id"]

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
        self.cpus = host["NanoCpus"] / 1e9
        self.memory = host["Memory"]
        # container port → bind address, as the runtime published them (SSH public, Jupyter private)
        self.bindings = {k: v[0]["HostIp"] or "0.0.0.0" for k, v in (host["PortBindings"] or {}).items() if v}
        if "22/tcp" not in self.bindings:
            raise RuntimeError(f"the API's container publishes no SSH port: {host['PortBindings']}")
        if config.get("Entrypoint") != docker_image_entrypoint() or host.get("Init"):
            raise RuntimeError("the API's container does not use the image's entrypoint as is")

    def run(self, i: int) -> tuple[float, float, str]:
        """(docker run returned, SSH banner) seconds and the container's name."""
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
        returned: list[float] = []
        waiter = threading.Thread(target=lambda: (process.wait(), returned.append(time.perf_counter() - t0)))
        waiter.start()
        banner = ssh_banner_at(ports["22/tcp"], t0)  # probing from the request on, like the API's
        waiter.join()
        if process.returncode != 0:
            raise RuntimeError(f"docker run failed: {process.stderr.read().decode()[:500]}")
        return returned[0], banner, name

    @staticmethod
    def remove(name: str) -> float:
        t0 = time.monotonic()
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", name, check=False)
        return time.monotonic() - t0


def docker_image_entrypoint():
    import json

    return json.loads(docker("image", "inspect", IMAGE, "--format", "{{json .Config.Entrypoint}}"))


def cleanup(scope: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label=remotegpu.scope={scope}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    vols = docker("volume", "ls", "-q", "--filter", f"label=remotegpu.scope={scope}", check=False).split()
    vols += docker("volume", "ls", "-q", "--filter", f"name=rgpu-bench-raw-{scope}-", check=False).split()
    if vols:
        docker("volume", "rm", "-f", *sorted(set(vols)), check=False)


def bench(heartbeat: float, reps: int) -> dict:
    scope = f"bench{uuid.uuid4().hex[:8]}"
    rows: dict[str, list[float]] = {
        k: [] for k in ("api_accepted", "api_running", "api_ssh", "api_delete", "raw_returned", "raw_ssh", "raw_delete")
    }
    try:
        with tempfile.TemporaryDirectory() as tmp, live_server(
            Path(tmp), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS=FAKE, REMOTEGPU_DOCKER_SCOPE=scope,
            REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_HEARTBEAT_SECONDS=str(heartbeat),
            REMOTEGPU_LOG_LEVEL="WARNING",
        ) as srv:
            token = srv.login("admin", "admin-password-123")
            ws = srv.request("GET", "/api/v1/workspaces", token=token)[1]["items"][0]["id"]
            deadline = time.monotonic() + 30
            while sum(t["free"] for t in srv.request("GET", "/api/v1/gpu-types", token=token)[1]["items"]) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the embedded agent did not register")
                time.sleep(0.2)
            api = ApiRunner(srv, token, ws, scope)
            # Warm-up (not counted): also gives the raw runs their template.
            *_, env_id = api.run(-1)
            template = docker_inspect(f"rgpu-env-{env_id}")
            api.remove(env_id)
            raw = RawRunner(scope, template)
            _, _, name = raw.run(-1)
            raw.remove(name)
            for i in range(reps):
                order = ("api", "raw") if i % 2 == 0 else ("raw", "api")
                for which in order:
                    if which == "api":
                        accepted, running, ssh, env_id = api.run(i)
                        rows["api_delete"].append(api.remove(env_id))
                        rows["api_accepted"].append(accepted)
                        rows["api_running"].append(running)
                        rows["api_ssh"].append(ssh)
                    else:
                        returned, ssh, name = raw.run(i)
                        rows["raw_delete"].append(raw.remove(name))
                        rows["raw_returned"].append(returned)
                        rows["raw_ssh"].append(ssh)
                print(f"  heartbeat {heartbeat:g}s rep {i + 1}/{reps}: api running {rows['api_running'][-1]:.2f}s "
                      f"ssh {rows['api_ssh'][-1]:.2f}s; raw returned {rows['raw_returned'][-1]:.2f}s "
                      f"ssh {rows['raw_ssh'][-1]:.2f}s", file=sys.stderr)
            if "Traceback" in srv.log_path.read_text():
                raise RuntimeError(f"the server logged an error:\n{srv.log_path.read_text()[-3000:]}")
    finally:
        cleanup(scope)
    return rows


def docker_inspect(name: str) -> dict:
    import json

    return json.loads(docker("inspect", name))[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--heartbeat", type=float, nargs="+", default=[1.0],
                        help="agent beat interval(s) in seconds to run the API side with")
    args = parser.parse_args()
    try:
        docker("image", "inspect", IMAGE)
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise SystemExit(f"bench/env_start.py needs a Docker daemon and {IMAGE} (make image)") from None

    results = [(hb, bench(hb, args.reps)) for hb in args.heartbeat]
    med = statistics.median
    print(f"\nEnvironment start, {args.reps} repetitions each, alternating, {os.cpu_count()} CPUs, "
          f"{IMAGE}, 1 CPU / 1 GiB / 1 fake GPU; medians (p90) in seconds")
    print(f"{'heartbeat':>9}  {'raw run -d':>14}  {'raw SSH':>14}  {'API 202':>8}  {'API running':>14}  {'API SSH':>14}  {'SSH ratio':>9}"
          f"  {'raw rm -f':>14}  {'API delete':>14}")
    for hb, r in results:
        def cell(xs: list[float]) -> str:
            return f"{med(xs):.2f} ({statistics.quantiles(xs, n=10)[-1]:.2f})" if len(xs) > 1 else f"{xs[0]:.2f}"

        ratio = med(r["api_ssh"]) / med(r["raw_ssh"])
        print(f"{hb:>8g}s  {cell(r['raw_returned']):>14}  {cell(r['raw_ssh']):>14}  {med(r['api_accepted']):>8.3f}  "
              f"{cell(r['api_running']):>14}  {cell(r['api_ssh']):>14}  {ratio:>8.2f}x"
              f"  {cell(r['raw_delete']):>14}  {cell(r['api_delete']):>14}")
    print("\nratio = median API create→SSH banner / median raw `docker run -d`→SSH banner (aim ≤ 1.3x)")
    print("API delete = DELETE request → neither the container nor the volume left in Docker (aim ≤ 2 s);"
          " raw rm -f = `docker rm -f` + `docker volume rm` of the same")


if __name__ == "__main__":
    main()
