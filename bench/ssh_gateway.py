"""The SSH gateway's cost: a 1 GiB scp and connection setup, through the gateway vs
straight to the environment's own sshd, in the same run against the same container.

Starts a real server (Docker runtime, its own scope, the gateway on) with one running
environment, then with OpenSSH's own clients:

* ``direct``   — ``scp -P <published port> root@host`` (the baseline: no gateway);
* ``gateway``  — ``scp <env id>@gateway`` (the gateway terminates SSH and relays the
  session over its own SSH connection to the environment's sshd);
* ``jump``     — ``scp -o ProxyJump=<user>@gateway root@<env id>`` (the gateway relays
  the TCP stream; the client's SSH goes end to end).

Each copy sends a 1 GiB file to ``/dev/null`` in the container (network path only, no
disk), ``--rounds`` times, best and median kept. Setup time is ``ssh … true``
(connect, key exchange, authentication, one command, exit), ``--connects`` times each.
Aims (issue 20): gateway throughput ≥ 80 % of direct, setup ≤ +100 ms. The machine's
load average is printed with the table.

    .venv/bin/python bench/ssh_gateway.py [--size-mib 1024] [--rounds 3] [--connects 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import IMAGE, wait_running  # noqa: E402
from tests.support.components import docker_with_image, remove_scope  # noqa: E402
from tests.support.live_server import free_port, live_server  # noqa: E402

COMMON = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
          "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (the server: the gateway runs in it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connects", type=int, default=10)
    parser.add_argument("--cipher", default="", help="force the client's cipher (ssh -c), e.g. aes128-gcm@openssh.com")
    args = parser.parse_args()

    docker = docker_with_image(IMAGE)
    scope = f"sgwb{uuid.uuid4().hex[:8]}"
    gateway_port = free_port()
    with tempfile.TemporaryDirectory(prefix="sshgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        key = tmp / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        payload = tmp / "payload.bin"
        with open(payload, "wb") as f:  # incompressible, written once, read from the page cache
            block = os.urandom(1024 * 1024)
            for _ in range(args.size_mib):
                f.write(block)
        try:
            with live_server(
                tmp / "server", REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="1xNVIDIA L4 24GB",
                REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
                REMOTEGPU_SSH_GATEWAY_PORT=str(gateway_port), REMOTEGPU_SSH_GATEWAY_BIND="127.0.0.1",
            ) as server:
                token = server.signup("bencher")
                code, body = server.request("POST", "/api/v1/users/me/ssh-keys",
                                            {"public_key": key.with_suffix(".pub").read_text(), "name": "bench"}, token=token)
                assert code == 201, body
                code, ws = server.request("GET", "/api/v1/workspaces", token=token)
                code, env = server.request(
                    "POST", "/api/v1/environments",
                    {"name": "bench", "workspace_id": ws["items"][0]["id"], "gpu_count": 0, "cpu_cores": 2, "memory_gib": 2},
                    token=token)
                assert code == 202, env
                env = wait_running(server, token, env["id"])
                env_id = env["id"]
                port = {p["purpose"]: p["port"] for p in env["ports"]}["ssh"]
                config = tmp / "ssh_config"
                config.write_text(
                    f"Host direct\n    HostName 127.0.0.1\n    Port {port}\n    User root\n"
                    f"Host gateway\n    HostName 127.0.0.1\n    Port {gateway_port}\n    User {env_id}\n"
                    f"Host jumphost\n    HostName 127.0.0.1\n    Port {gateway_port}\n    User bencher\n"
                    f"    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
                    f"    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
                    f"Host jump\n    HostName {env_id}\n    User root\n    ProxyJump jumphost\n"
                    f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
                    f"    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
                )
                forced = ["-c", args.cipher] if args.cipher else []
                ssh = ["ssh", "-F", str(config), *forced]
                deadline = time.monotonic() + 60
                while subprocess.run([*ssh, "direct", "true"], capture_output=True).returncode != 0 or \
                        subprocess.run([*ssh, "gateway", "true"], capture_output=True).returncode != 0:
                    if time.monotonic() > deadline:
                        raise SystemExit("the environment's SSH never answered")
                    time.sleep(0.5)
                cipher = subprocess.run([*ssh, "-v", "direct", "true"], capture_output=True, text=True).stderr
                chosen = next((line.split("cipher:")[1].split()[0] for line in cipher.splitlines() if "cipher:" in line), "?")

                ways = ["direct", "gateway", "jump"]
                setup: dict[str, list[float]] = {w: [] for w in ways}
                for _ in range(args.connects):  # interleaved, so load drifts hit every way alike
                    for way in ways:
                        setup[way].append(timed([*ssh, way, "true"]))
                copies: dict[str, list[float]] = {w: [] for w in ways}
                server_cpu: dict[str, list[float]] = {w: [] for w in ways}
                for _ in range(args.rounds):
                    for way in ways:
                        before = cpu_seconds(server.process.pid)
                        copies[way].append(timed(["scp", "-F", str(config), *forced, str(payload), f"{way}:/dev/null"]))
                        server_cpu[way].append(cpu_seconds(server.process.pid) - before)
                load = os.getloadavg()
        finally:
            remove_scope(docker, scope)

    mib = args.size_mib
    base_rate = mib / min(copies["direct"])
    base_setup = statistics.median(setup["direct"])
    print(f"\nSSH gateway: {mib} MiB scp to /dev/null in the container x {args.rounds}, "
          f"'ssh true' x {args.connects}; client cipher {chosen}; cores {os.cpu_count()}")
    print(f"{'way':<9} {'best MiB/s':>11} {'median MiB/s':>13} {'vs direct':>10} {'setup ms (median)':>18} {'vs direct':>10}"
          f" {'server CPU s/GiB':>17}")
    for way in ways:
        best = mib / min(copies[way])
        median = mib / statistics.median(copies[way])
        s = statistics.median(setup[way]) * 1000
        cpu = statistics.median(server_cpu[way]) / (mib / 1024)
        print(f"{way:<9} {best:>11.0f} {median:>13.0f} {best / base_rate * 100:>9.0f}% {s:>18.0f} "
              f"{s - base_setup * 1000:>+9.0f}ms {cpu:>17.2f}")
    print(f"load average while measuring: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("server CPU: the platform's process, where the gateway runs (direct: its background work only)")
    print("aims: gateway >= 80 % of direct throughput, setup <= +100 ms")


if __name__ == "__main__":
    main()
