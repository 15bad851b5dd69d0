"""The agent's image work on a fake runtime: a missing image is pulled in the background
(beats go on, progress is reported for the environment), a failed pull fails the
environment; image jobs run in the background, report their log from the server's
offset, and stop when cancelled."""

from __future__ import annotations

import asyncio

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.application.fleet.agent_protocol import HeartbeatReply, ImageJobOrder
from tests.support.agent_fakes import FixedSystem, MemoryCredentials
from tests.unit.fleet.test_host_agent import FakeLink


class ImageRuntime(InMemoryRuntime):
    """InMemoryRuntime plus the image operations, driven by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.local: set[str] = set()
        self.pull_gate = asyncio.Event()
        self.pull_error: Exception | None = None
        self.pulls: list[tuple[str, object]] = []
        self.job_gate = asyncio.Event()

    async def has_image(self, reference: str) -> bool:
        return reference in self.local

    async def images_present(self, references: list[str]) -> list[str]:
        return [r for r in references if r in self.local]

    async def pull_image(self, reference, auth, progress) -> None:
        self.pulls.append((reference, auth))
        progress(f"pulling image {reference}: 40% (200 of 500 MB)")
        await self.pull_gate.wait()
        if self.pull_error:
            raise self.pull_error
        self.local.add(reference)

    async def save_environment(self, env_id, target, auth, log_line, cancelled):
        log_line("exporting")
        while not self.job_gate.is_set():
            if cancelled():
                from remotegpu.adapters.runtime.docker_images import JobCancelled

                raise JobCancelled()
            await asyncio.sleep(0.01)
        log_line("pushed")
        from remotegpu.adapters.runtime.docker_images import BuiltImage

        return BuiltImage(target, "sha256:abc", 123, 2)

    async def build_image(self, *args):
        raise AssertionError("not used")


def make_agent(runtime, link) -> HostAgent:
    return HostAgent(runtime, FakeGpuProbe("", seed="g"), link, FixedSystem(), name="h", credentials=MemoryCredentials(),
                     address="10.0.0.5", join_token="join-1")


async def test_a_missing_image_is_pulled_in_the_background_with_progress():
    runtime, link = ImageRuntime(), FakeLink()
    agent = make_agent(runtime, link)
    link.want("env-a", "running")
    spec = link.desired["env-a"].spec
    link.desired["env-a"] = type(link.desired["env-a"])("env-a", "running", 1,
                                                         type(spec)(**{**spec.__dict__, "registry_auth": ("r", "u", "p")}))
    await agent.beat_once()  # returns while the pull goes on
    await agent.beat_once()
    assert runtime.pulls == [("remotegpu/base:latest", ("r", "u", "p"))]  # once, with the registry's credentials
    observed = {o.env_id: o for o in link.reports[-1].observed}
    assert observed["env-a"].status == "missing" and observed["env-a"].message.startswith("pulling image")
    assert await runtime.inspect("env-a") is None
    runtime.pull_gate.set()
    await asyncio.sleep(0)
    await agent.beat_once()
    assert (await runtime.inspect("env-a")).status == "running"


async def test_a_failed_pull_fails_the_environment():
    runtime, link = ImageRuntime(), FakeLink()
    agent = make_agent(runtime, link)
    link.want("env-a", "running")
    runtime.pull_error = RuntimeError("image remotegpu/base:latest could not be pulled")
    await agent.beat_once()
    runtime.pull_gate.set()
    await asyncio.sleep(0)
    await agent.beat_once()
    await agent.beat_once()
    observed = {o.env_id: o for o in link.reports[-1].observed}
    assert observed["env-a"].status == "failed" and "could not be pulled" in observed["env-a"].message


class JobLink(FakeLink):
    def __init__(self) -> None:
        super().__init__()
        self.orders: list[ImageJobOrder] = []

    async def heartbeat(self, agent_token, report):
        reply = await super().heartbeat(agent_token, report)
        return HeartbeatReply(reply.host_id, reply.desired, reply.interval_seconds, image_jobs=list(self.orders))


async def test_jobs_run_in_the_background_report_from_the_servers_offset_and_cancel():
    runtime, link = ImageRuntime(), JobLink()
    agent = make_agent(runtime, link)
    link.orders = [ImageJobOrder("job-1", "save", "reg/x:1", env_id="env-a", auth=("reg", "u", "p"))]
    await agent.beat_once()
    await asyncio.sleep(0.05)
    await agent.beat_once()
    report = {j.job_id: j for j in link.reports[-1].image_jobs}["job-1"]
    assert report.status == "running" and report.log_from == 0 and "exporting" in report.log
    # The server has the first line: the agent sends from there on.
    received = len(report.log)
    link.orders = [ImageJobOrder("job-1", "save", "reg/x:1", env_id="env-a", log_received=received)]
    runtime.job_gate.set()
    await asyncio.sleep(0.05)
    await agent.beat_once()
    report = {j.job_id: j for j in link.reports[-1].image_jobs}["job-1"]
    # This beat's report was made before the reply that told the offset: it starts at the
    # previous offset (the server keeps only what is new); the next one starts at the new one.
    assert report.status == "succeeded" and report.log_from == 0 and "pushed" in report.log
    await agent.beat_once()
    report = {j.job_id: j for j in link.reports[-1].image_jobs}["job-1"]
    assert report.log_from == received and report.log.startswith("pushed")
    assert (report.digest, report.size_bytes, report.layers) == ("sha256:abc", 123, 2)
    link.orders = []  # the server has the outcome: the agent forgets the job
    await agent.beat_once()
    await agent.beat_once()
    assert link.reports[-1].image_jobs == []

    runtime.job_gate.clear()
    link.orders = [ImageJobOrder("job-2", "save", "reg/x:2", env_id="env-a")]
    await agent.beat_once()
    link.orders = [ImageJobOrder("job-2", "save", "reg/x:2", env_id="env-a", cancel=True)]
    await agent.beat_once()
    await asyncio.sleep(0.05)
    await agent.beat_once()
    report = {j.job_id: j for j in link.reports[-1].image_jobs}["job-2"]
    assert report.status == "cancelled"
