"""HostAgent on in-memory adapters: registration, reconciliation, failures, retries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.application.environments.ports import LABEL_GENERATION, LABEL_HOST, WORKSPACE_PATH, RuntimeSpec
from remotegpu.application.fleet.agent import AgentNotRegistered, HostAgent
from remotegpu.application.fleet.agent_protocol import DesiredEnvironment, HeartbeatReply, HostReport, QuarantinedEnvironment
from remotegpu.application.fleet.ports import AgentLinkError, AgentTokenRejected
from tests.support.agent_fakes import FixedSystem, MemoryCredentials

FILE = f"{WORKSPACE_PATH}/notes.txt"


class FakeLink:
    """The server, reduced to what the agent sees: one-time join tokens and a desired list."""

    def __init__(self, join_token: str = "join-1") -> None:
        self.join_tokens = {join_token}
        self.registrations: list[str] = []
        self.reports: list[HostReport] = []
        self.desired: dict[str, DesiredEnvironment] = {}
        self.errors: list[Exception] = []  # raised by the next heartbeats, in order
        self.token = "rga_secret"
        self.interval = 5.0

    async def register(self, join_token: str, name: str, report: HostReport) -> tuple[str, str]:
        if join_token not in self.join_tokens:
            raise AgentLinkError("join token is invalid or already used", status=401, code="invalid_join_token")
        self.join_tokens.discard(join_token)
        self.registrations.append(name)
        return "host-1", self.token

    async def heartbeat(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        if self.errors:
            raise self.errors.pop(0)
        if agent_token != self.token:
            raise AgentTokenRejected("agent token is invalid", status=401, code="invalid_agent_token")
        self.reports.append(report)
        return HeartbeatReply("host-1", list(self.desired.values()), self.interval)

    def want(self, env_id: str, desired: str, generation: int = 1) -> None:
        spec = make_spec(env_id, generation) if desired == "running" else None
        self.desired[env_id] = DesiredEnvironment(env_id, desired, generation, spec)

    def last_observed(self) -> dict[str, tuple[str, int | None, str]]:
        return {o.env_id: (o.status, o.generation, o.message) for o in self.reports[-1].observed}


def make_spec(env_id: str, generation: int = 1) -> RuntimeSpec:
    return RuntimeSpec(env_id=env_id, image="remotegpu/base:latest", ports={22: 40022},
                       labels={LABEL_GENERATION: str(generation)})


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


@pytest.fixture
def runtime() -> InMemoryRuntime:
    return InMemoryRuntime()


@pytest.fixture
def credentials() -> MemoryCredentials:
    return MemoryCredentials()


@pytest.fixture
def make_agent(runtime, link, credentials):
    def make(**kwargs) -> HostAgent:
        kwargs.setdefault("join_token", "join-1")
        return HostAgent(runtime, FakeGpuProbe("2xNVIDIA A100-SXM4-80GB", seed="gpu-1"), link, FixedSystem(),
                         name="gpu-1", credentials=credentials, address="10.0.0.5", **kwargs)

    return make


@pytest.fixture
def agent(make_agent) -> HostAgent:
    return make_agent()


# --- registration and report ------------------------------------------------------------


async def test_registers_once_then_reuses_the_saved_token(make_agent, link, credentials):
    first = make_agent()
    await first.beat_once()
    assert link.registrations == ["gpu-1"]
    assert credentials.saved == ("host-1", link.token)

    # A restart: the join token is spent, the saved agent token carries on.
    restarted = make_agent()
    reply = await restarted.beat_once()
    assert reply.host_id == "host-1"
    assert link.registrations == ["gpu-1"]
    assert restarted.host_id == "host-1"


async def test_without_join_token_or_saved_token_it_cannot_register(make_agent):
    with pytest.raises(AgentNotRegistered):
        await make_agent(join_token=None).ensure_registered()


async def test_report_describes_the_host(agent, runtime):
    await runtime.ensure_running(make_spec("env-a", 3))
    report = await agent.report()
    assert [g.index for g in report.gpus] == [0, 1] and report.gpus[0].model == "NVIDIA A100-SXM4-80GB"
    assert (report.cpu_cores, report.memory_gib, report.disk_gib) == (16, 64, 500)
    assert report.runtime == "memory" and report.runtime_healthy is True
    assert report.fake_gpus is True
    assert report.address == "10.0.0.5"
    assert set(report.utilization) == {g.uuid for g in report.gpus}
    assert [(o.env_id, o.status, o.generation) for o in report.observed] == [("env-a", "running", 3)]


async def test_a_pending_container_desired_stopped_is_stopped(agent, link, runtime, monkeypatch):
    """A runtime with its own scheduler (Kubernetes) reports a Pod still waiting for a node as
    ``missing`` with ``pending: …``: something exists, so a stop must still reach it."""
    from remotegpu.application.environments.ports import RuntimeState

    stops: list[str] = []

    async def pending_list():
        return [RuntimeState("env-p", "missing", "pod-uid", message="pending: unschedulable: no node fits")]

    async def stop(env_id):
        stops.append(env_id)

    monkeypatch.setattr(runtime, "list", pending_list)
    monkeypatch.setattr(runtime, "inspect", lambda env_id: _pending_inspect(env_id))
    monkeypatch.setattr(runtime, "stop", stop)
    link.want("env-p", "stopped")
    await agent.beat_once()
    assert stops and stops[0] == "env-p"
    assert link.reports[0].observed[0].message.startswith("pending: ")


async def _pending_inspect(env_id):
    from remotegpu.application.environments.ports import RuntimeState

    return RuntimeState(env_id, "missing", "pod-uid", message="pending: unschedulable: no node fits")


async def test_a_runtime_that_cannot_list_is_reported_unhealthy(agent, runtime, monkeypatch):
    async def broken():
        raise RuntimeError("daemon gone")

    monkeypatch.setattr(runtime, "list", broken)
    report = await agent.report()
    assert report.runtime_healthy is False and report.observed == []


# --- reconciliation -----------------------------------------------------------------------


async def test_desired_running_runs_and_is_reported_on_the_very_next_beat(agent, link, runtime):
    link.want("env-a", "running")
    await agent.beat_once()
    state = await runtime.inspect("env-a")
    assert state is not None and state.status == "running" and state.generation == 1
    # The follow-up beat inside beat_once already told the server.
    assert len(link.reports) == 2
    assert link.reports[0].observed == []
    assert link.last_observed() == {"env-a": ("running", 1, "")}

    # Nothing to do next time: one beat, no new start.
    starts = runtime.starts
    await agent.beat_once()
    assert len(link.reports) == 3 and runtime.starts == starts


async def test_generation_bump_recreates_the_container_on_the_same_disk(agent, link, runtime):
    link.want("env-a", "running", generation=1)
    await agent.beat_once()
    runtime.write_file("env-a", FILE, "keep me")
    before = (await runtime.inspect("env-a")).container_id

    link.want("env-a", "running", generation=2)
    await agent.beat_once()
    after = await runtime.inspect("env-a")
    assert after.status == "running" and after.generation == 2
    assert after.container_id != before
    assert runtime.disk("env-a") == {FILE: "keep me"}
    assert link.last_observed() == {"env-a": ("running", 2, "")}


async def test_desired_stopped_stops_and_keeps_the_disk(agent, link, runtime):
    link.want("env-a", "running")
    await agent.beat_once()
    runtime.write_file("env-a", FILE, "keep me")

    link.want("env-a", "stopped")
    await agent.beat_once()
    assert (await runtime.inspect("env-a")).status == "stopped"
    assert runtime.disk("env-a") == {FILE: "keep me"}
    assert link.last_observed()["env-a"][0] == "stopped"

    link.want("env-a", "running")
    await agent.beat_once()
    assert (await runtime.inspect("env-a")).status == "running"
    assert runtime.disk("env-a") == {FILE: "keep me"}


async def test_desired_deleted_removes_everything(agent, link, runtime):
    link.want("env-a", "running")
    await agent.beat_once()
    link.want("env-a", "deleted")
    await agent.beat_once()
    assert await runtime.inspect("env-a") is None
    assert link.last_observed() == {}  # "missing": the server can finish the delete


async def test_unknown_environments_are_quarantined_stopped_and_kept_never_removed(agent, link, runtime):
    # e.g. an agent that registered again under a new host id, or a restored database:
    # the server does not ask for them, but their disks are someone's.
    await runtime.ensure_running(make_spec("stranger-stopped"))
    await runtime.stop("stranger-stopped")
    old_host = RuntimeSpec(env_id="stranger-running", image="img", labels={LABEL_GENERATION: "1", LABEL_HOST: "host-0"})
    await runtime.ensure_running(old_host)
    runtime.write_file("stranger-running", FILE, "someone's work")
    link.want("env-a", "running")

    for _ in range(3):  # beat after beat: stopped, kept, reported
        await agent.beat_once()

    states = {s.env_id: s.status for s in await runtime.list()}
    assert states == {"env-a": "running", "stranger-stopped": "stopped", "stranger-running": "stopped"}
    assert runtime.disk("stranger-running") == {FILE: "someone's work"}
    assert link.reports[-1].quarantined == [
        QuarantinedEnvironment("stranger-running", "host-0"), QuarantinedEnvironment("stranger-stopped", ""),
    ]


async def test_a_quarantined_environment_the_server_asks_for_again_runs_on_its_disk(agent, link, runtime):
    await runtime.ensure_running(make_spec("env-b"))
    runtime.write_file("env-b", FILE, "kept")
    await agent.beat_once()
    assert (await runtime.inspect("env-b")).status == "stopped"
    link.want("env-b", "running")  # e.g. the agent's credentials were restored
    await agent.beat_once()
    assert (await runtime.inspect("env-b")).status == "running" and runtime.disk("env-b") == {FILE: "kept"}
    assert link.reports[-1].quarantined == []


async def test_a_quarantined_environment_the_server_marked_deleted_is_removed(agent, link, runtime):
    await runtime.ensure_running(make_spec("env-b"))
    await agent.beat_once()
    link.want("env-b", "deleted")
    await agent.beat_once()
    assert await runtime.inspect("env-b") is None
    assert link.reports[-1].quarantined == []


async def test_one_failing_environment_does_not_block_the_others(agent, link, runtime):
    runtime.fail_start.add("env-bad")
    for env_id in ("env-a", "env-bad", "env-c"):
        link.want(env_id, "running")
    await agent.beat_once()

    assert (await runtime.inspect("env-a")).status == "running"
    assert (await runtime.inspect("env-c")).status == "running"
    observed = link.last_observed()
    assert observed["env-a"][0] == observed["env-c"][0] == "running"
    status, generation, message = observed["env-bad"]
    assert status == "failed" and generation == 1 and "failed to start (injected)" in message

    # Still reported while it keeps failing; gone once the server gives up on it.
    await agent.beat_once()
    assert link.last_observed()["env-bad"][0] == "failed"
    link.want("env-bad", "stopped")
    await agent.beat_once()
    assert "env-bad" not in link.last_observed()


async def test_a_failure_on_an_existing_environment_overrides_its_observed_state(agent, link, runtime):
    link.want("env-a", "running")
    await agent.beat_once()
    link.want("env-a", "stopped")
    await agent.beat_once()
    runtime.fail_start.add("env-a")
    link.want("env-a", "running", generation=2)
    await agent.beat_once()
    assert link.last_observed()["env-a"][:2] == ("failed", 2)
    runtime.fail_start.clear()
    await agent.beat_once()
    assert link.last_observed()["env-a"] == ("running", 2, "")


async def test_actions_run_concurrently_within_a_bound(make_agent, link, runtime, monkeypatch):
    in_flight = peak = 0
    original = runtime.ensure_running

    async def slow(spec):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await original(spec)

    monkeypatch.setattr(runtime, "ensure_running", slow)
    for i in range(10):
        link.want(f"env-{i}", "running")
    await make_agent(max_concurrent_actions=4).beat_once()
    assert peak == 4
    assert len([s for s in await runtime.list() if s.status == "running"]) == 10


# --- the loop -------------------------------------------------------------------------------


def stopping_sleep(stop: asyncio.Event, after: int, delays: list[float]):
    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= after:
            stop.set()
        await asyncio.sleep(0)

    return sleep


async def test_link_errors_are_retried_with_backoff_and_never_crash(make_agent, link, runtime, caplog):
    stop = asyncio.Event()
    delays: list[float] = []
    agent = make_agent(sleep=stopping_sleep(stop, 5, delays), clock=lambda: 100.0)
    link.want("env-a", "running")
    link.errors = [AgentLinkError("cannot reach the server: connection refused"), AgentLinkError("502 bad gateway"),
                   RuntimeError("something unexpected"), AgentLinkError("again")]
    await asyncio.wait_for(agent.run_forever(stop), timeout=5)

    assert delays == [5.0, 10.0, 20.0, 30.0, 5.0]  # doubling, capped at 30 s, then the interval
    assert (await runtime.inspect("env-a")).status == "running"
    assert link.last_observed() == {"env-a": ("running", 1, "")}
    assert "heartbeat failed" in caplog.text


async def test_a_rejected_agent_token_is_logged_and_the_agent_keeps_going(make_agent, link, credentials, caplog):
    credentials.saved = ("host-1", "rga_revoked")
    stop = asyncio.Event()
    delays: list[float] = []
    agent = make_agent(join_token=None, sleep=stopping_sleep(stop, 2, delays))
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(agent.run_forever(stop), timeout=5)
    assert "agent token rejected — re-register with a new join token" in caplog.text
    assert delays == [5.0, 10.0]


async def test_a_rejected_token_is_replaced_by_a_new_join_token(make_agent, link, credentials):
    credentials.saved = ("host-1", "rga_revoked")  # the admin re-issued the host: new join token
    stop = asyncio.Event()
    agent = make_agent(join_token="join-1", sleep=stopping_sleep(stop, 2, []))
    await asyncio.wait_for(agent.run_forever(stop), timeout=5)
    assert link.registrations == ["gpu-1"]
    assert credentials.saved == ("host-1", link.token)
    assert link.reports  # beating again


async def test_run_forever_stops_promptly_with_the_real_sleep(agent, link):
    link.interval = 3600.0
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run_forever(stop))
    while not link.reports:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)


async def test_on_the_local_runtime_user_variables_fail_the_environment_with_the_reason(link, credentials, tmp_path):
    """How the refusal surfaces: the environment is reported failed, the reason in its
    message (the server records it as the environment's failure, shown in its events)."""
    from remotegpu.adapters.runtime.local_process import LocalProcessRuntime

    runtime = LocalProcessRuntime(tmp_path / "rt")
    agent = HostAgent(runtime, FakeGpuProbe("", seed="gpu-1"), link, FixedSystem(), name="gpu-1",
                      credentials=credentials, address="10.0.0.5", join_token="join-1")
    spec = RuntimeSpec(env_id="env-a", image="img", env={"BROWSER": "sh -c id", "REMOTEGPU_ENV_ID": "env-a"},
                       labels={LABEL_GENERATION: "1"})
    link.desired["env-a"] = DesiredEnvironment("env-a", "running", 1, spec)
    try:
        await agent.beat_once()
        status, _, message = link.last_observed()["env-a"]
        assert status == "failed" and "refuses environment variables (BROWSER)" in message
        assert await runtime.inspect("env-a") is None
    finally:
        for state in await runtime.list():
            await runtime.remove(state.env_id)
