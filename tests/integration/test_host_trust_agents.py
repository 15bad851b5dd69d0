"""Agents are trusted with their own host only, with real ``remotegpu agent`` processes
over HTTP against the real server (in-memory runtimes, fake GPUs; no Docker needed).

* an agent on a host created without ``allow_loopback`` that reports the default
  private address 127.0.0.1 is refused (422) and the host stays unregistered;
* a copied agent (same machine identity: same GPU UUIDs) joined as another host takes
  none of the first host's GPUs: the first keeps running, the copy shows a conflict;
* rotating a host's token cuts its agent off at once; ``remotegpu agent --token NEW``
  (same state dir) comes back as the same host with the same environment;
* removing the host (force) turns its environment lost; a stop is settled by the
  sweeper; deleting it completes at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.integration.test_environment_crash_recovery import ADMIN, create_env, free_gpus, host_of, wait_status, wait_until
from tests.support.live_server import live_server

L4 = "2xNVIDIA L4 24GB"


@contextmanager
def agent(server_url: str, state_dir: Path, log_path: Path, name: str, token: str | None, *extra: str):
    cmd = [sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", server_url, "--runtime", "memory",
           "--fake-gpus", L4, "--state-dir", str(state_dir), "--name", name, *extra]
    if token:
        cmd += ["--token", token]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_")}
    env["REMOTEGPU_LOG_LEVEL"] = "INFO"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_real_agents_are_trusted_with_their_own_host_only(tmp_path):
    with live_server(tmp_path / "server", REMOTEGPU_EMBEDDED_AGENT="false", REMOTEGPU_HEARTBEAT_SECONDS="1",
                     REMOTEGPU_SWEEP_INTERVAL_SECONDS="0.5") as server:
        admin = server.login(*ADMIN)
        # Host A: its agent runs on this machine (private address 127.0.0.1), explicitly allowed.
        code, a = server.request("POST", "/api/v1/hosts", {"name": "box-a", "allow_loopback": True}, token=admin)
        assert code == 201, a
        # Host B: created like any remote host, no loopback allowance.
        code, b = server.request("POST", "/api/v1/hosts", {"name": "box-b"}, token=admin)
        assert code == 201, b

        a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
        with agent(server.url, tmp_path / "a", a_log, "box-a", a["join_token"]) as agent_a:
            wait_until(lambda: host_of(server, admin, a["id"])["status"] == "ready", 30, "agent A to register")
            env = create_env(server, admin, "victim", gpu_count=1)
            running = wait_status(server, admin, env["id"], "running", 30)
            held = running["gpus"][0]["uuid"]

            # B's agent with the default private address 127.0.0.1: refused, nothing stored.
            with agent(server.url, tmp_path / "b", b_log, "box-b", b["join_token"]) as agent_b:
                wait_until(lambda: "loopback" in b_log.read_text(), 30, "agent B to be refused")
                assert agent_b.poll() is None  # it keeps trying; the admin sees the host never joined
            host_b = host_of(server, admin, b["id"])
            assert host_b["status"] == "offline" and host_b["gpus"] == [] and host_b["last_heartbeat_at"] is None
            assert not (tmp_path / "b" / "agent-credentials.json").exists()

            # A copy of A's agent (same identity: same GPU UUIDs) joined as B: takes nothing.
            with agent(server.url, tmp_path / "b", b_log, "box-a", b["join_token"], "--private-address", "10.9.8.7"):
                wait_until(lambda: host_of(server, admin, b["id"])["conditions"], 30, "B's conflict to show")
                host_a, host_b = host_of(server, admin, a["id"]), host_of(server, admin, b["id"])
                assert len(host_a["gpus"]) == 2 and held in {g["uuid"] for g in host_a["gpus"] if g["allocated"]}
                assert host_b["gpus"] == [] and host_b["private_address"] == "10.9.8.7"
                assert {c["details"]["uuid"] for c in host_b["conditions"]} == {g["uuid"] for g in host_a["gpus"]}
                assert free_gpus(server, admin) == 1
                after = wait_status(server, admin, env["id"], "running", 5)
                assert [g["uuid"] for g in after["gpus"]] == [held]
                second = create_env(server, admin, "second", gpu_count=1)
                assert second["host_id"] == a["id"] and second["gpus"][0]["uuid"] != held
                wait_status(server, admin, second["id"], "running", 30)
                code, _ = server.request("DELETE", f"/api/v1/hosts/{b['id']}?force=true", token=admin)
                assert code == 204

            # Rotate A's token: its agent is cut off at once ...
            code, rotated = server.request("POST", f"/api/v1/hosts/{a['id']}/token", token=admin)
            assert code == 200, rotated
            wait_until(lambda: "agent token rejected" in a_log.read_text(), 15, "agent A to be refused")
            agent_a.send_signal(signal.SIGTERM)
            agent_a.wait(15)

        # ... and `remotegpu agent --token NEW` on the same state dir is the same host again.
        with agent(server.url, tmp_path / "a", a_log, "box-a", rotated["join_token"]):
            wait_until(lambda: host_of(server, admin, a["id"])["status"] == "ready"
                       and host_of(server, admin, a["id"])["last_heartbeat_at"], 30, "agent A to come back")
            wait_status(server, admin, env["id"], "running", 30)
            code, hosts = server.request("GET", "/api/v1/hosts", token=admin)
            assert [h["id"] for h in hosts["items"]] == [a["id"]]

            # Remove A: refused while online with environments, then forced.
            code, body = server.request("DELETE", f"/api/v1/hosts/{a['id']}", token=admin)
            assert code == 409 and body["error"]["code"] == "host_not_empty"
            code, _ = server.request("DELETE", f"/api/v1/hosts/{a['id']}?force=true", token=admin)
            assert code == 204
            lost = wait_status(server, admin, env["id"], "lost", 5)
            assert lost["gpus"] == [] and "removed" in lost["status_message"]
            # A stop has no agent to wait for: the server's sweeper settles it (lost: only delete is left).
            code, stopping = server.request("POST", f"/api/v1/environments/{env['id']}/stop", token=admin)
            assert code == 202 and stopping["status"] == "stopping", stopping
            settled = wait_status(server, admin, env["id"], "lost", 10)
            assert "its host was removed" in settled["status_message"]
            code, deleted = server.request("DELETE", f"/api/v1/environments/{env['id']}", token=admin)
            assert code == 202 and deleted["status"] == "deleted"
            assert server.request("GET", f"/api/v1/environments/{env['id']}", token=admin)[0] == 404
        assert "Traceback" not in server.log_path.read_text()
