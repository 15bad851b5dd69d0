"""The agent's adapters: HTTP link (against a stub server), credential file, system info."""

from __future__ import annotations

import stat

import pytest
from aiohttp import web

from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.adapters.fleet.http_link import HttpAgentLink
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.fleet.wire import reply_to_dict, report_from_dict
from remotegpu.application.fleet.agent_protocol import DesiredEnvironment, HeartbeatReply, HostReport
from remotegpu.application.fleet.ports import AgentLinkError, AgentTokenRejected

REPORT = HostReport(gpus=[], cpu_cores=4, memory_gib=16, disk_gib=100, runtime="memory", runtime_healthy=True)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": {}}}, status=status)


@pytest.fixture
async def server(aiohttp_server):
    seen: dict = {}

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        seen["register"] = body
        if body["join_token"] != "join-ok":
            return _error(401, "invalid_join_token", "join token is invalid or already used")
        report_from_dict(body["report"])
        return web.json_response({"host_id": "host-1", "agent_token": "rga_x"}, status=201)

    async def heartbeat(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        body = await request.json()
        if request.headers.get("Authorization") != "Bearer rga_x":
            return _error(401, "invalid_agent_token", "agent token is invalid")
        if body["runtime"] == "broken":
            return web.Response(status=502, text="bad gateway")
        if body["runtime"] == "garbled":
            return web.json_response({"host_id": "host-1"})
        report_from_dict(body)
        reply = HeartbeatReply("host-1", [DesiredEnvironment("env-1", "stopped", 2)], 5.0)
        return web.json_response(reply_to_dict(reply))

    app = web.Application()
    app.router.add_post("/api/v1/agent/register", register)
    app.router.add_post("/api/v1/agent/heartbeat", heartbeat)
    srv = await aiohttp_server(app)
    srv.seen = seen
    return srv


async def test_register_and_heartbeat(server):
    async with HttpAgentLink(str(server.make_url("/")).rstrip("/") + "/") as link:
        assert await link.register("join-ok", "gpu-1", REPORT) == ("host-1", "rga_x")
        assert server.seen["register"]["name"] == "gpu-1"
        reply = await link.heartbeat("rga_x", REPORT)
        assert server.seen["auth"] == "Bearer rga_x"
        assert reply == HeartbeatReply("host-1", [DesiredEnvironment("env-1", "stopped", 2)], 5.0)


async def test_errors_carry_the_servers_message(server):
    async with HttpAgentLink(str(server.make_url(""))) as link:
        with pytest.raises(AgentLinkError) as info:
            await link.register("used", "gpu-1", REPORT)
        assert not isinstance(info.value, AgentTokenRejected)
        assert info.value.status == 401 and info.value.code == "invalid_join_token"
        assert "join token is invalid or already used" in str(info.value)

        with pytest.raises(AgentTokenRejected) as info:
            await link.heartbeat("rga_revoked", REPORT)
        assert info.value.code == "invalid_agent_token" and "agent token is invalid" in str(info.value)

        with pytest.raises(AgentLinkError, match="502 http_error.*bad gateway"):
            await link.heartbeat("rga_x", HostReport([], 1, 1, 1, "broken", True))
        with pytest.raises(AgentLinkError, match="not a valid reply: reply.interval_seconds: required"):
            await link.heartbeat("rga_x", HostReport([], 1, 1, 1, "garbled", True))


async def test_an_unreachable_server_is_a_link_error(unused_tcp_port):
    async with HttpAgentLink(f"http://127.0.0.1:{unused_tcp_port}", timeout=2) as link:
        with pytest.raises(AgentLinkError, match="cannot reach"):
            await link.heartbeat("rga_x", REPORT)


def test_server_url_must_be_http():
    with pytest.raises(ValueError):
        HttpAgentLink("gpu.example.com")


def test_credentials_file(tmp_path):
    store = FileCredentialStore(tmp_path / "state")
    assert store.load() is None
    store.save("host-1", "rga_secret")
    assert store.load() == ("host-1", "rga_secret")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert FileCredentialStore(tmp_path / "state").load() == ("host-1", "rga_secret")
    store.save("host-1", "rga_other")
    assert store.load() == ("host-1", "rga_other")
    assert [p.name for p in store.state_dir.iterdir()] == [store.path.name]  # no temporary left over

    store.path.write_text("{not json")
    assert store.load() is None
    store.path.write_text('{"host_id": "h"}')
    assert store.load() is None


def test_system_info(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65843092 kB\nMemFree:        1000 kB\n")
    info = HostSystemInfo(tmp_path / "not" / "yet" / "created", meminfo=meminfo)
    assert info.cpu_cores() >= 1
    assert info.memory_gib() == 62
    assert info.disk_gib() > 0
    assert HostSystemInfo(tmp_path, meminfo=tmp_path / "missing").memory_gib() >= 0
