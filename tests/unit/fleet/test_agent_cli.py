"""``remotegpu agent`` as a process, against a stub of the server's agent endpoints:
registers, starts what is desired on the local runtime, reports it, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from aiohttp import web

from remotegpu.adapters.fleet.wire import reply_to_dict, report_from_dict
from remotegpu.application.environments.ports import LABEL_GENERATION, RuntimeSpec
from remotegpu.application.fleet.agent_protocol import DesiredEnvironment, HeartbeatReply
from remotegpu.entrypoints.cli import main


async def test_agent_process_registers_runs_reports_and_stops(aiohttp_server, tmp_path):
    reports = []

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["join_token"] == "join-1" and body["name"] == "box-1"
        return web.json_response({"host_id": "host-1", "agent_token": "rga_1"}, status=201)

    async def heartbeat(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer rga_1"
        reports.append(report_from_dict(await request.json()))
        spec = RuntimeSpec("env-1", "ignored", labels={LABEL_GENERATION: "1"})
        return web.json_response(reply_to_dict(HeartbeatReply("host-1", [DesiredEnvironment("env-1", "running", 1, spec)], 0.2)))

    app = web.Application()
    app.router.add_post("/api/v1/agent/register", register)
    app.router.add_post("/api/v1/agent/heartbeat", heartbeat)
    server = await aiohttp_server(app)

    state = tmp_path / "agent"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remotegpu.entrypoints.cli", "agent", "--server", str(server.make_url("")),
        "--token", "join-1", "--name", "box-1", "--state-dir", str(state), "--runtime", "local",
        "--fake-gpus", "2xNVIDIA L4 24GB", "--address", "10.1.2.3",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if any(o.status == "running" for r in reports for o in r.observed):
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()[-2000:]
    running = [r for r in reports if any(o.status == "running" for o in r.observed)]
    assert running, stderr.decode()[-2000:]
    report = running[0]
    assert report.runtime == "local" and report.fake_gpus and len(report.gpus) == 2 and report.address == "10.1.2.3"
    assert json.loads((state / "agent-credentials.json").read_text()) == {"host_id": "host-1", "agent_token": "rga_1"}

    # The environment outlives the agent (like a container); clean it up.
    from remotegpu.adapters.runtime.local_process import LocalProcessRuntime

    runtime = LocalProcessRuntime(state / "local-runtime")
    assert (await runtime.inspect("env-1")).status == "running"
    await runtime.remove("env-1")


def test_agent_without_token_or_saved_credentials_exits_2(tmp_path, capsys):
    assert main(["agent", "--server", "http://127.0.0.1:1", "--state-dir", str(tmp_path), "--runtime", "memory"]) == 2
    assert "pass --token" in capsys.readouterr().err


def test_agent_with_a_bad_fake_gpu_spec_exits_2(tmp_path, capsys):
    args = ["agent", "--server", "http://127.0.0.1:1", "--token", "t", "--state-dir", str(tmp_path), "--fake-gpus", "lots"]
    assert main(args) == 2
    assert "NxMODEL" in capsys.readouterr().err
