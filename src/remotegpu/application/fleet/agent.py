"""The host agent: makes one host's runtime match the desired state the server sends.

Level-triggered: every beat the agent reports what it observes (inventory, sizes, the
state of every environment its runtime manages), the server answers the desired state
of every environment placed on the host, and the agent converges — starting, stopping,
recreating and removing until the two agree. Nothing depends on remembering a previous
beat, so a lost beat, a restarted agent or a server that crashed half-way all converge
on the next one:

* desired ``running``: started (or created) unless it already runs the desired
  generation; one running an older generation (a restart) is stopped and started
  again, which recreates it on the same disk;
* desired ``stopped``: stopped, its disk kept; desired ``deleted``: removed, disk too —
  the only way anything is ever removed: the server marked that environment deleted;
* managed by the runtime (it carries this installation's labels) but not desired at
  all: *quarantined* — stopped, kept, and reported in every heartbeat
  (``HostReport.quarantined``) so admins see it on the host. That is what an agent
  that registered again under a new host id, or a server restored from an older
  database, finds: the disks of environments it cannot vouch for. It never removes
  them; should the server ask for one again (its credentials restored), it is
  simply started; should the server mark it deleted, it is removed; otherwise an
  operator decides (see the README).

One environment's failure never holds back the others: its error is reported as
observed ``failed`` (with the message) on the following beats, until an action on it
succeeds again.

The same class runs in-process in embedded mode and behind ``remotegpu agent``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from remotegpu.application.monitoring.collector import MetricsCollector
from remotegpu.application.environments.ports import (
    EnvironmentRuntime,
    RuntimeSpec,
    RuntimeState,
    RuntimeWithExec,
    is_pending,
)
from remotegpu.application.fleet.agent_protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    DesiredEnvironment,
    DesiredJobNode,
    HeartbeatReply,
    HostReport,
    ImageJobOrder,
    ImageJobReport,
    JobLogChunk,
    ObservedEnvironment,
    ObservedJobNode,
    QuarantinedEnvironment,
)
from remotegpu.application.workloads.ports import JobRuntime
from remotegpu.application.fleet.ports import (
    AgentCredentialStore,
    AgentLink,
    AgentLinkError,
    AgentTokenRejected,
    GpuProbe,
    SystemInfo,
    WaitingAgentLink,
)

log = logging.getLogger(__name__)

#: At most this many environments are being started/stopped/removed at once.
MAX_CONCURRENT_ACTIONS = 4
#: Upper bound of the retry delay after failed beats (doubling from the beat interval).
MAX_BACKOFF_SECONDS = 30.0
#: A runtime listing taken for a heartbeat's report is reused by that beat's reconcile
#: when no older than this (seconds); only this agent changes its runtime meanwhile.
LISTING_REUSE_SECONDS = 5.0
#: Longest error message reported for one environment.
MAX_MESSAGE_CHARS = 1000
#: While job nodes run here the agent beats at least this often (their logs stream live).
JOB_BEAT_SECONDS = 1.0
#: Most log bytes sent per job node, and in all, per beat (a report stays well under
#: the server's 1 MiB body limit once base64-encoded).
JOB_LOG_CHUNK_BYTES = 128 * 1024
JOB_LOG_BEAT_BYTES = 512 * 1024
#: Prefix of job nodes in the long-poll's ``known`` map (see AgentService.wait_for_work).
JOB_KEY = "job:"


#: Most log characters one report carries per job (the rest follows on the next beats).
MAX_JOB_LOG_PER_BEAT = 64 * 1024
#: How often the agent looks which catalog images it has (seconds).
IMAGES_CHECK_SECONDS = 30.0


class _JobRun:
    """One image job on this agent: its task, log and outcome (reported every beat
    until the server no longer sends the job)."""

    def __init__(self, order: ImageJobOrder) -> None:
        self.order = order
        self.log = ""
        self.progress = ""
        self.status = "running"
        self.result = None
        self.error = ""
        self.cancel = False
        self.task: asyncio.Task | None = None

    def line(self, text: str) -> None:
        self.log += text + "\n"
        self.progress = text[:300]


class AgentNotRegistered(Exception):
    """No saved credentials and no join token: nothing to register with."""


@dataclass(frozen=True)
class _Failure:
    message: str
    generation: int | None


class DataMounts(Protocol):
    """Materializes a spec's dataset/model mounts on this host (adapters/storage/mount_cache.py)."""

    async def prepare(self, spec: RuntimeSpec, agent_token: str, running: set[str]) -> RuntimeSpec | None:
        """The spec with its mounts bound; None while they are still being downloaded.
        Job-node specs (``JobNodeSpec``) pass through the same way, keyed by node id."""
        ...

    def progress(self) -> dict[str, str]:
        """env id → a line on its mounts' download (while one runs), for the observed message."""
        ...


class JobOutputSink(Protocol):
    """Where a succeeded job's output goes (the server: HTTP for remote agents, in-process
    for the embedded one; adapters/workloads/output_sinks.py)."""

    async def send(self, agent_token: str, node_id: str, archive: Path | None, error: str = "") -> None:
        """The tar archive of the output directory, or why there is none. Raises when the
        server did not take it (the agent tries again on a later beat)."""
        ...


#: Tries at sending one node's output before the agent reports it failed.
OUTPUT_SEND_TRIES = 3


class HostAgent:
    """One host's agent. See the module docstring for the reconciliation rules.

    ``probe`` reads the GPUs, ``system`` the machine's sizes, ``link`` talks to the
    server, ``credentials`` keeps the agent token across restarts. ``clock`` (seconds,
    monotonic) and ``sleep`` are injectable for tests; with the default ``sleep``,
    ``run_forever`` wakes up as soon as its stop event is set.
    """

    def __init__(
        self,
        runtime: EnvironmentRuntime,
        probe: GpuProbe,
        link: AgentLink,
        system: SystemInfo,
        *,
        name: str,
        join_token: str | None = None,
        credentials: AgentCredentialStore,
        address: str = "",
        private_address: str = "",
        runtime_name: str | None = None,
        fake_gpus: bool | None = None,
        agent_version: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        max_concurrent_actions: int = MAX_CONCURRENT_ACTIONS,
        data_mounts: DataMounts | None = None,
        collector: "MetricsCollector | None" = None,
        training_nodes: JobRuntime | None = None,
        job_outputs: JobOutputSink | None = None,
    ) -> None:
        self.collector = collector
        self.runtime = runtime
        # Training-job nodes and inference replicas (application/workloads; the wire calls
        # them job_nodes): None = this agent runs none.
        self.training_nodes = training_nodes
        self._job_failures: dict[str, str] = {}
        self._log_acked: dict[str, int] = {}  # node id → bytes the server keeps
        # Succeeded jobs' outputs: node id → the task sending it; nodes whose output went;
        # tries so far per node.
        self.job_outputs = job_outputs
        self._collecting: dict[str, asyncio.Task] = {}
        self._collected: set[str] = set()
        self._collect_tries: dict[str, int] = {}
        self._jobs_active = False
        self.probe = probe
        self.link = link
        self.system = system
        self.name = name
        self.address = address
        self.private_address = private_address
        self.agent_version = agent_version
        self._join_token = join_token or None
        self._credentials = credentials
        self._runtime_name = runtime_name or _runtime_name(runtime)
        self._fake_gpus = _is_fake(probe) if fake_gpus is None else fake_gpus
        self._clock = clock
        self._sleep = sleep
        self._actions = asyncio.Semaphore(max_concurrent_actions)
        self._failures: dict[str, _Failure] = {}
        # env_id → (container id, keys, host key digest) last installed in its container.
        self._keys_written: dict[str, tuple[str | None, tuple[str, ...] | None, str | None]] = {}
        self._host_id: str | None = None
        self._token: str | None = None
        self._reregistered = False
        # env id → (desired, generation) of the last reply: what a long-poll compares with.
        self._known: dict[str, tuple[str, int]] = {}
        self._listed: tuple[float, list[RuntimeState]] | None = None
        # env id → what the last reconcile quarantined (reported until it is gone or desired).
        self._quarantined: dict[str, QuarantinedEnvironment] = {}
        self._can_wait = isinstance(link, WaitingAgentLink)
        # Dataset/model versions environments mount (storage): materialized before a start.
        self.data_mounts = data_mounts
        self._running_ids: set[str] = set()
        self._running_nodes: set[str] = set()  # job nodes and replicas the server wants running
        # Images (issue 15): pulls running in the background (image → task), environments
        # waiting for one (env id → image), progress lines, image jobs, catalog images here.
        self._pulls: dict[str, asyncio.Task] = {}
        self._pull_progress: dict[str, str] = {}
        self._waiting_pull: dict[str, str] = {}
        self._image_jobs: dict[str, _JobRun] = {}
        self._images_present: list[str] = []
        self._images_checked_at = float("-inf")

    @property
    def host_id(self) -> str | None:
        return self._host_id

    # --- registration -----------------------------------------------------------------

    async def ensure_registered(self) -> str:
        """Load the saved (host_id, agent_token), or trade the join token for them and
        save them. Returns the host id. Raises ``AgentNotRegistered`` without either,
        ``AgentLinkError`` when the server refuses or cannot be reached."""
        if self._token is not None and self._host_id is not None:
            return self._host_id
        saved = self._credentials.load()
        if saved is not None:
            self._host_id, self._token = saved
            return saved[0]
        return await self._register()

    async def _register(self) -> str:
        if not self._join_token:
            raise AgentNotRegistered(
                f"agent {self.name!r} has no saved agent token and no join token: "
                "create the host on the server and pass its join token"
            )
        host_id, token = await self.link.register(self._join_token, self.name, await self.report())
        self._credentials.save(host_id, token)
        self._host_id, self._token = host_id, token
        log.info("agent registered", extra={"host_id": host_id, "agent_name": self.name})
        return host_id

    # --- observe ----------------------------------------------------------------------

    async def report(self) -> HostReport:
        """Everything the server needs to know about this host, now."""
        states, healthy = await self._list_runtime()
        # The beat's reconcile reuses this listing instead of asking the runtime again
        # (one Docker round of list + inspect less on the way to starting a container).
        self._listed = (self._clock(), states) if healthy else None
        observed = {
            s.env_id: ObservedEnvironment(s.env_id, s.status, s.generation, s.message, s.ssh_sessions)
            for s in states
        }
        for env_id, failure in self._failures.items():
            observed[env_id] = ObservedEnvironment(env_id, "failed", failure.generation, failure.message)
        for env_id, image in self._waiting_pull.items():
            if env_id not in observed and image in self._pull_progress:
                observed[env_id] = ObservedEnvironment(env_id, "missing", None, self._pull_progress[image])
        mounting = getattr(self.data_mounts, "progress", None)
        for env_id, line in (mounting() if mounting is not None else {}).items():
            if env_id not in observed:  # its mounts are downloading: shown on the environment's page
                observed[env_id] = ObservedEnvironment(env_id, "missing", None, line)
        listed = {s.env_id for s in states}
        quarantined = [q for env_id, q in sorted(self._quarantined.items()) if env_id in listed]
        return HostReport(
            gpus=self.probe.inventory(),
            cpu_cores=self.system.cpu_cores(),
            memory_gib=self.system.memory_gib(),
            disk_gib=self.system.disk_gib(),
            runtime=self._runtime_name,
            runtime_healthy=healthy,
            fake_gpus=self._fake_gpus,
            observed=[observed[k] for k in sorted(observed)],
            utilization=self.probe.utilization(),
            address=self.address,
            private_address=self.private_address,
            agent_version=self.agent_version,
            quarantined=quarantined,
            image_jobs=[self._image_job_report(run) for run in self._image_jobs.values()],
            images=list(self._images_present),
            cluster_nodes=_cluster_nodes(self.probe),
            **(await self._job_report()),
        )

    def _image_job_report(self, run: _JobRun) -> ImageJobReport:
        start = min(run.order.log_received, len(run.log))
        result = run.result
        return ImageJobReport(
            job_id=run.order.job_id, status=run.status, log_from=start, log=run.log[start:start + MAX_JOB_LOG_PER_BEAT],
            progress=run.progress, digest=getattr(result, "digest", ""), size_bytes=getattr(result, "size_bytes", 0),
            layers=getattr(result, "layers", 0), error=run.error,
        )

    # --- images: background pulls, jobs, what this host has ------------------------------

    def _pull_in_background(self, image: str, auth: tuple[str, str, str] | None) -> asyncio.Task:
        task = self._pulls.get(image)
        if task is None:
            def progress(line: str) -> None:
                self._pull_progress[image] = line

            self._pull_progress[image] = f"pulling image {image}: starting"
            task = asyncio.ensure_future(self.runtime.pull_image(image, auth, progress))  # type: ignore[attr-defined]
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved" warning
            self._pulls[image] = task
        return task

    async def _needs_pull(self, want: DesiredEnvironment, seen: RuntimeState | None) -> bool:
        """True while ``want``'s image is being pulled (started here when missing): the
        beat goes on meanwhile, with progress in the environment's observed message.
        A failed pull raises (the environment fails, with the reason)."""
        if seen is not None or want.spec is None or not hasattr(self.runtime, "pull_image"):
            return False
        image = want.spec.image
        task = self._pulls.get(image)
        if task is None:
            if await self.runtime.has_image(image):  # type: ignore[attr-defined]
                return False
            task = self._pull_in_background(image, want.spec.registry_auth)
        self._waiting_pull[want.env_id] = image
        if not task.done():
            return True
        del self._pulls[image]
        self._pull_progress.pop(image, None)
        self._waiting_pull.pop(want.env_id, None)
        task.result()  # raises the pull's error
        return False

    async def _image_work(self, reply: HeartbeatReply) -> None:
        """Start the image jobs the server sends, pass on cancellations, forget jobs it no
        longer sends; preload catalog images and note which this host has."""
        if not hasattr(self.runtime, "save_environment"):
            return
        orders = {o.job_id: o for o in reply.image_jobs}
        for job_id, order in orders.items():
            run = self._image_jobs.get(job_id)
            if run is None:
                if order.cancel:
                    continue
                run = self._image_jobs[job_id] = _JobRun(order)
                run.task = asyncio.ensure_future(self._run_job(run))
            run.order = order
            if order.cancel and run.status == "running":
                run.cancel = True
        for job_id in [j for j, run in self._image_jobs.items() if j not in orders and run.status != "running"]:
            del self._image_jobs[job_id]  # the server has its outcome
        for image in reply.preload:
            if image not in self._images_present and image not in self._pulls and len(self._pulls) < 2:
                if not await self.runtime.has_image(image):  # type: ignore[attr-defined]
                    self._pull_in_background(image, reply.registry_auth)
        for image, task in list(self._pulls.items()):
            if task.done() and image not in self._waiting_pull.values():
                del self._pulls[image]
                self._pull_progress.pop(image, None)
        if reply.catalog and self._clock() - self._images_checked_at >= IMAGES_CHECK_SECONDS:
            self._images_checked_at = self._clock()
            try:
                self._images_present = await self.runtime.images_present(reply.catalog)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001
                log.warning("could not list images: %s", exc)

    async def _run_job(self, run: _JobRun) -> None:
        order = run.order
        cancelled = lambda: run.cancel  # noqa: E731 - read from the job's thread
        try:
            if order.kind == "save":
                run.line(f"saving environment {order.env_id} as {order.target}")
                work = self.runtime.save_environment(order.env_id, order.target, order.auth, run.line, cancelled)  # type: ignore[attr-defined]
            else:
                run.line(f"building {order.target} from {order.base_reference}")
                work = self.runtime.build_image(  # type: ignore[attr-defined]
                    order.dockerfile, order.context, order.target, order.base_reference, order.auth,
                    order.cpu_cores, order.memory_gib, order.timeout_seconds, run.line, cancelled,
                )
            run.result = await asyncio.wait_for(work, timeout=order.timeout_seconds)
            run.status = "succeeded"
            run.line("done")
        except asyncio.TimeoutError:
            run.cancel = True  # the thread stops at its next check
            run.status, run.error = "failed", f"timed out after {order.timeout_seconds} s"
            run.line(run.error)
        except Exception as exc:  # noqa: BLE001 - reported to the server
            if run.cancel and type(exc).__name__ == "JobCancelled":
                run.status, run.error = "cancelled", "cancelled"
            else:
                run.status, run.error = "failed", (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
            run.line(run.error)
            log.warning("image job %s: %s", order.job_id, run.error)

    async def _job_report(self) -> dict:
        if self.training_nodes is None:
            return {"jobs_healthy": False}
        try:
            states = await self.training_nodes.list()
        except Exception as exc:  # noqa: BLE001 - reported as nothing seen; environments go on
            log.warning("job runtime cannot list its nodes: %s", exc)
            return {"jobs_healthy": False}
        nodes = [ObservedJobNode(s.node_id, s.status, s.exit_code, s.message[:MAX_MESSAGE_CHARS], s.log_size) for s in states]
        seen = {s.node_id for s in states}
        nodes += [ObservedJobNode(nid, "failed", None, msg) for nid, msg in self._job_failures.items() if nid not in seen]
        chunks = []
        budget = JOB_LOG_BEAT_BYTES
        for s in states:
            offset = self._log_acked.get(s.node_id, 0)
            if s.log_size > offset and budget > 0:
                try:
                    data = await self.training_nodes.read_log(s.node_id, offset, min(JOB_LOG_CHUNK_BYTES, budget))
                except Exception as exc:  # noqa: BLE001
                    log.warning("job node %s: cannot read its log: %s", s.node_id, exc)
                    continue
                if data:
                    chunks.append(JobLogChunk(s.node_id, offset, data))
                    budget -= len(data)
        self._jobs_active = any(s.status == "running" for s in states) or bool(chunks)
        return {"job_nodes": nodes, "job_logs": chunks, "jobs_healthy": True}

    async def reconcile_training_nodes(self, wanted: list[DesiredJobNode]) -> bool:
        """Make the job runtime match ``wanted``; nodes not mentioned are stopped (kept)."""
        if self.training_nodes is None:
            return False
        try:
            states = {s.node_id: s for s in await self.training_nodes.list()}
        except Exception as exc:  # noqa: BLE001
            log.warning("not reconciling job nodes: %s", exc)
            return False
        changed = False
        desired = {d.node_id: d for d in wanted}
        self._running_nodes = {d.node_id for d in wanted if d.desired == "running"}
        for d in wanted:
            self._log_acked[d.node_id] = d.log_offset
            seen = states.get(d.node_id)
            try:
                if d.desired == "running" and d.spec is not None:
                    if seen is None and d.node_id not in self._job_failures:
                        spec = d.spec
                        if spec.data_mounts:  # materialized in the host cache first (as for environments)
                            if self.data_mounts is None:
                                raise RuntimeError("this agent has no dataset/model cache for mounts")
                            spec = await self.data_mounts.prepare(spec, self._token or "", self._running_ids | self._running_nodes)
                            if spec is None:
                                continue  # still downloading: the next beat starts it
                        await self.training_nodes.ensure_running(spec)
                        changed = True
                elif d.desired == "stopped":
                    if seen is not None and seen.status == "running":
                        await self.training_nodes.stop(d.node_id)
                        changed = True
                    elif seen is not None and d.collect_output:
                        self._collect_output(d.node_id, d.collect_output)
                elif d.desired == "removed":
                    if seen is not None:
                        await self.training_nodes.remove(d.node_id, keep_network=d.keep_network)
                        changed = True
                    self._log_acked.pop(d.node_id, None)
            except Exception as exc:  # noqa: BLE001 - one node never stops the others
                message = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
                log.warning("job node %s: %s", d.node_id, message)
                self._job_failures[d.node_id] = message
                changed = True
        for nid, seen in states.items():
            if nid not in desired and seen.status == "running":
                await self.training_nodes.stop(nid)
                changed = True
        for nid in list(self._job_failures):
            if nid not in desired or desired[nid].desired != "running":
                del self._job_failures[nid]
        for nid in [n for n in self._collected | set(self._collect_tries) if n not in desired or not desired[n].collect_output]:
            self._collected.discard(nid)
            self._collect_tries.pop(nid, None)
        return changed

    def _collect_output(self, node_id: str, path: str) -> None:
        """Copy ``path`` out of the node's exited container and send it, in the background
        (the beat goes on); once per node unless sending failed."""
        if self.job_outputs is None or node_id in self._collected:
            return
        task = self._collecting.get(node_id)
        if task is not None and not task.done():
            return
        self._collecting[node_id] = asyncio.ensure_future(self._send_output(node_id, path))

    async def _send_output(self, node_id: str, path: str) -> None:
        assert self.training_nodes is not None and self.job_outputs is not None
        tries = self._collect_tries[node_id] = self._collect_tries.get(node_id, 0) + 1
        workdir = Path(tempfile.mkdtemp(prefix="rgpu-output-"))
        try:
            archive: Path | None = workdir / "output.tar"
            error = ""
            try:
                await self.training_nodes.export(node_id, path, archive)
            except Exception as exc:  # noqa: BLE001 - the server records why
                archive, error = None, (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
            try:
                await self.job_outputs.send(self._token or "", node_id, archive, error)
                self._collected.add(node_id)
                log.info("job node %s: output %s sent", node_id, path)
            except Exception as exc:  # noqa: BLE001 - tried again on a later beat
                log.warning("job node %s: could not send its output (try %d): %s", node_id, tries, exc)
                if tries >= OUTPUT_SEND_TRIES:
                    try:
                        await self.job_outputs.send(self._token or "", node_id, None, f"the agent could not send it: {exc}"[:MAX_MESSAGE_CHARS])
                    except Exception:  # noqa: BLE001
                        pass
                    self._collected.add(node_id)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
            self._collecting.pop(node_id, None)

    async def _list_runtime(self) -> tuple[list[RuntimeState], bool]:
        try:
            return await self.runtime.list(), True
        except Exception as exc:  # noqa: BLE001 - an unhealthy runtime is reported, not fatal
            log.warning("runtime cannot list its environments: %s", exc)
            return [], False

    # --- converge ---------------------------------------------------------------------

    async def reconcile(self, reply: HeartbeatReply) -> bool:
        """Make the runtime match ``reply.desired``; True when anything changed (an
        action was taken, or the set of failures is different), i.e. when the server
        should hear about it soon."""
        listed, self._listed = self._listed, None
        try:
            if listed is not None and self._clock() - listed[0] <= LISTING_REUSE_SECONDS:
                states = {s.env_id: s for s in listed[1]}
            else:
                states = {s.env_id: s for s in await self.runtime.list()}
        except Exception as exc:  # noqa: BLE001
            log.warning("not reconciling: runtime cannot list its environments: %s", exc)
            return False
        desired = {d.env_id: d for d in reply.desired}
        self._running_ids = {d.env_id for d in reply.desired if d.desired == "running"}
        before = dict(self._failures)
        jobs = [self._guarded(d.env_id, d.generation, self._converge_and_sync(d, states.get(d.env_id))) for d in desired.values()]
        jobs += [self._guarded(env_id, None, self._quarantine(states[env_id])) for env_id in states if env_id not in desired]
        results = await asyncio.gather(*jobs)
        for env_id in list(self._quarantined):
            if env_id in desired or env_id not in states:
                del self._quarantined[env_id]  # asked for again, or removed by an operator
        # Failures of environments the server no longer mentions and the runtime no
        # longer has are over: nothing is left to report about them.
        for env_id in list(self._failures):
            if env_id not in desired and env_id not in states:
                del self._failures[env_id]
        for env_id in list(self._keys_written):
            if env_id not in desired or desired[env_id].desired != "running":
                del self._keys_written[env_id]
        return any(results) or self._failures != before

    async def _guarded(self, env_id: str, generation: int | None, action: Awaitable[bool]) -> bool:
        async with self._actions:
            try:
                changed = await action
            except Exception as exc:  # noqa: BLE001 - one environment never stops the others
                message = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
                log.warning("environment %s: %s", env_id, message, extra={"env_id": env_id})
                self._failures[env_id] = _Failure(message, generation)
                return False  # a new or different failure shows in ``self._failures != before``
        self._failures.pop(env_id, None)
        return changed

    async def _converge_and_sync(self, want: DesiredEnvironment, seen: RuntimeState | None) -> bool:
        changed = await self._converge(want, seen)
        if want.desired == "running" and (want.authorized_keys is not None or want.ssh_host_private_key is not None):
            await self._sync_keys(want.env_id, want.authorized_keys, want.ssh_host_private_key, None if changed else seen)
        return changed

    async def _sync_keys(self, env_id: str, keys: list[str] | None, host_key: str | None, seen: RuntimeState | None) -> None:
        """Install ``keys`` into the running environment's authorized_keys and
        ``host_key`` as its sshd's host key when they (or its container) changed since
        the last install: one exec, the host key in its environment (never on a command
        line). ``None`` leaves that part alone. A failure is logged and retried on the
        next beat; it never fails the environment.

        The ``local`` runtime never installs a host key: its "environments" are
        processes on this very machine, whose /etc/ssh is the machine's own."""
        if not isinstance(self.runtime, RuntimeWithExec):
            return
        if self._runtime_name == "local":
            host_key = None
            if keys is None:
                return
        try:
            if seen is None:
                seen = await self.runtime.inspect(env_id)
            if seen is None or seen.status != "running":
                return
            digest = None if host_key is None else hashlib.sha256(host_key.encode()).hexdigest()
            wanted = (seen.container_id, None if keys is None else tuple(keys), digest)
            if self._keys_written.get(env_id) == wanted:
                return
            argv, env = access_command(keys, host_key)
            code, output = await self.runtime.exec(env_id, argv, env)
            if code != 0:
                raise RuntimeError(f"exit code {code}: {output.strip()[:300]}")
            self._keys_written[env_id] = wanted
            log.info("environment %s: access installed (%s authorized key(s)%s)", env_id,
                     "no" if keys is None else len(keys), ", host key" if host_key else "", extra={"env_id": env_id})
        except Exception as exc:  # noqa: BLE001 - retried next beat
            self._keys_written.pop(env_id, None)
            log.warning("environment %s: could not install its SSH keys: %s", env_id, exc, extra={"env_id": env_id})

    async def _converge(self, want: DesiredEnvironment, seen: RuntimeState | None) -> bool:
        if want.desired == "running":
            if want.spec is None:
                raise ValueError(f"environment {want.env_id} is desired running but came without a spec")
            if seen is not None and seen.status == "running":
                if seen.generation is None or seen.generation == want.generation:
                    return False  # already runs as desired
                log.info("environment %s: generation %s → %s, recreating", want.env_id, seen.generation, want.generation)
                await self.runtime.stop(want.env_id)
            if await self._needs_pull(want, seen):
                return False  # pulling in the background; started on a later beat
            spec = want.spec
            if spec.data_mounts and self.data_mounts is not None and not getattr(self.runtime, "mounts_data_itself", False):
                prepared = await self.data_mounts.prepare(spec, self._token or "", self._running_ids | self._running_nodes)
                if prepared is None:  # still downloading beside the loop: the next beat tries again
                    return False
                spec = prepared
            await self.runtime.ensure_running(spec)
            return True
        if want.desired == "stopped":
            if seen is None or seen.status == "stopped" or (seen.status == "missing" and not is_pending(seen.status, seen.message)):
                return False
            await self.runtime.stop(want.env_id)  # running, or failed: stop is silent then
            return seen.status == "running"
        if want.desired == "deleted":
            if seen is None:
                return False
            await self.runtime.remove(want.env_id)
            return True
        raise ValueError(f"environment {want.env_id}: unknown desired state {want.desired!r}")

    async def _quarantine(self, seen: RuntimeState) -> bool:
        """An environment of this installation the server did not ask for: stop it, keep
        it, report it. Never removed here (see the module docstring). True when the
        server should hear about it now (newly quarantined, or stopped just now)."""
        env_id = seen.env_id
        new = env_id not in self._quarantined
        if new:
            log.warning(
                "environment %s (made for host %s) is not known to the server for this host: quarantined "
                "(stopped and kept, never removed by the agent)", env_id, seen.host_id or "?", extra={"env_id": env_id},
            )
        self._quarantined[env_id] = QuarantinedEnvironment(env_id, seen.host_id)
        if seen.status in ("running", "failed"):
            await self.runtime.stop(env_id)  # silent for one that is not running
        return new or seen.status == "running"

    # --- the loop ---------------------------------------------------------------------

    async def beat_once(self) -> HeartbeatReply:
        """Report, receive the desired state, converge.

        When converging changed anything, one more beat follows at once, so the server
        sees the outcome (``running``, ``failed``, gone) within a moment rather than a
        whole interval later; its reply is converged too, but never triggers a third
        beat — whatever that changed is reported on the next regular beat.
        """
        reply = await self._beat()
        changed = await self.reconcile(reply)
        changed = await self.reconcile_training_nodes(reply.job_nodes) or changed
        if changed:
            reply = await self._beat()
            await self.reconcile(reply)
            await self.reconcile_training_nodes(reply.job_nodes)
        await self.send_metrics()  # after converging: buffered samples never delay a start
        await self._image_work(reply)
        return reply

    async def _beat(self) -> HeartbeatReply:
        await self.ensure_registered()
        assert self._token is not None
        reply = await self.link.heartbeat(self._token, await self.report())
        self._known = {d.env_id: (d.desired, d.generation) for d in reply.desired}
        self._known.update({JOB_KEY + d.node_id: (d.desired, 0) for d in reply.job_nodes})
        if any(d.desired == "running" for d in reply.job_nodes):
            self._jobs_active = True
        return reply

    async def send_metrics(self) -> int:
        """Send the buffered samples over the link (after each heartbeat: the same channel,
        one request per batch). A failed send keeps them for the next beat."""
        send = getattr(self.link, "send_metrics", None)
        if self.collector is None or send is None or self._token is None or not len(self.collector):
            return 0
        sent = 0
        while len(self.collector):
            rows = self.collector.drain()
            try:
                await send(self._token, rows)
            except asyncio.CancelledError:
                self.collector.put_back(rows)
                raise
            except Exception as exc:  # noqa: BLE001 - metrics never fail a heartbeat
                self.collector.put_back(rows)
                log.warning("sending %d metric samples failed (kept for the next beat): %s", len(rows), exc)
                break
            sent += len(rows)
        return sent

    async def collect_forever(self, stop: asyncio.Event) -> None:
        """Read GPUs and containers every ``collector.interval_seconds`` until ``stop``."""
        if self.collector is None:
            return
        while not stop.is_set():
            started = self._clock()
            try:
                await self.collector.collect_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.warning("metrics collection failed", exc_info=True)
            delay = max(0.0, self.collector.interval_seconds - (self._clock() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Beat every ``interval_seconds`` (from the server's reply) until ``stop`` is set.

        Errors never end the loop: they are logged and the beat is retried after a
        delay doubling from the interval up to ``MAX_BACKOFF_SECONDS``.
        """
        interval = DEFAULT_HEARTBEAT_SECONDS
        failures = 0
        collecting = asyncio.ensure_future(self.collect_forever(stop)) if self.collector is not None else None
        try:
            await self._beat_forever(stop, interval, failures)
        finally:
            if collecting is not None:
                collecting.cancel()
                await asyncio.gather(collecting, return_exceptions=True)
            outputs = [t for t in self._collecting.values() if not t.done()]
            for task in outputs:  # a job output being sent: the next start sends it again
                task.cancel()
            await asyncio.gather(*outputs, return_exceptions=True)

    async def _beat_forever(self, stop: asyncio.Event, interval: float, failures: int) -> None:
        while not stop.is_set():
            started = self._clock()
            try:
                reply = await self.beat_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the agent never dies of a bad beat
                failures += 1
                self._log_failure(exc, failures)
                if isinstance(exc, AgentTokenRejected):
                    await self._try_reregister()
                delay = min(MAX_BACKOFF_SECONDS, interval * 2 ** min(failures - 1, 10))
            else:
                if failures:
                    log.info("agent is back in touch with the server after %d failed beats", failures)
                failures = 0
                interval = reply.interval_seconds
                delay = max(0.0, interval - (self._clock() - started))
                if self._jobs_active:  # job nodes here: their state and logs go up every second
                    delay = min(delay, JOB_BEAT_SECONDS)
            await self._pause(stop, delay)

    def _log_failure(self, exc: Exception, failures: int) -> None:
        if isinstance(exc, AgentTokenRejected):
            log.error("agent token rejected — re-register with a new join token (%s)", exc)
        elif isinstance(exc, (AgentLinkError, AgentNotRegistered)):
            log.warning("heartbeat failed (%d in a row): %s", failures, exc)
        else:
            log.exception("heartbeat failed (%d in a row)", failures)

    async def _try_reregister(self) -> None:
        """The saved token was rejected. If this run was given a join token, try it once:
        an admin who issued a new one only has to restart the agent with it."""
        self._token = self._host_id = None
        if not self._join_token or self._reregistered:
            return
        self._reregistered = True
        try:
            await self._register()
        except Exception as exc:  # noqa: BLE001
            log.error("registering again with the given join token failed: %s", exc)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Until the next beat: ``seconds``, or less when the server says there is work
        (long-poll, when the link can) or ``stop`` is set."""
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        waits = {asyncio.ensure_future(stop.wait())}
        if self._can_wait and self._token is not None and seconds > 0.5:
            waits.add(asyncio.ensure_future(self._wait_for_work(seconds)))
        # A pull an environment waits for, or an image job, that ends: beat at once (the
        # environment starts, the job's outcome goes up) rather than at the next interval.
        # Watched, never cancelled here.
        watched = {t for image, t in self._pulls.items() if image in self._waiting_pull.values() and not t.done()}
        watched |= {r.task for r in self._image_jobs.values() if r.task is not None and not r.task.done()}
        try:
            await asyncio.wait(waits | watched, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _wait_for_work(self, seconds: float) -> None:
        """Returns early only when there is work; any failure just waits out the pause
        (the regular beat then carries on as before)."""
        assert self._token is not None
        try:
            if await self.link.wait_for_work(self._token, dict(self._known), seconds):  # type: ignore[attr-defined]
                return
        except asyncio.CancelledError:
            raise
        except AgentLinkError as exc:
            if exc.status in (404, 405):
                log.info("the server cannot long-poll for work; beating every interval instead")
                self._can_wait = False
            else:
                log.debug("waiting for work failed: %s", exc)
        except Exception:  # noqa: BLE001 - a failed long-poll must not end the agent
            log.debug("waiting for work failed", exc_info=True)
        await asyncio.sleep(seconds)


AUTHORIZED_KEYS_BEGIN = "# >>> remotegpu managed keys (changes here are overwritten)"
AUTHORIZED_KEYS_END = "# <<< remotegpu managed keys"

# Replaces the managed block of /root/.ssh/authorized_keys atomically, keeping lines a
# user added outside it; POSIX sh + sed, so it works in any image. The keys come in $1.
_AUTHORIZED_KEYS_SCRIPT = (
    'set -e; d=/root/.ssh; f="$d/authorized_keys"; mkdir -p "$d"; chmod 700 "$d"; touch "$f"; '
    '{ sed "/^$2/,/^$3/d" "$f"; printf "%s\\n" "$2"; if [ -n "$1" ]; then printf "%s\\n" "$1"; fi; '
    'printf "%s\\n" "$3"; } > "$f.rgpu-tmp"; chmod 600 "$f.rgpu-tmp"; mv "$f.rgpu-tmp" "$f"'
)


def authorized_keys_command(keys: list[str]) -> list[str]:
    """argv that installs ``keys`` as the managed block of root's authorized_keys."""
    return ["/bin/sh", "-c", _AUTHORIZED_KEYS_SCRIPT, "remotegpu-keys", "\n".join(keys),
            AUTHORIZED_KEYS_BEGIN, AUTHORIZED_KEYS_END]


#: Where sshd looks for its ed25519 host key (OpenSSH's default ``HostKey``).
SSH_HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"
#: The environment variable that carries the host key into the install script.
HOST_KEY_VARIABLE = "REMOTEGPU_SSH_HOST_KEY"

# Installs the platform's host key ($REMOTEGPU_SSH_HOST_KEY) for the container's sshd, then
# runs the authorized_keys script when "$4" is "keys". POSIX sh, so it works in any image.
# * It first waits (10 s at most) for sshd's pid file: the image's entrypoint generates
#   its own host keys before starting sshd (`ssh-keygen`), which must not race ours.
# * The other host key types go, so sshd presents only the platform's key.
# * sshd is told to reload (SIGHUP: it re-executes itself with the same pid, keeping open
#   sessions) only when the key changed.
_ACCESS_SCRIPT = (
    'set -e; if [ -n "${%(var)s:-}" ]; then k=%(path)s; i=0; '
    'while [ ! -s /run/sshd.pid ] && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i+1)); done; '
    'if [ "$(cat "$k" 2>/dev/null)" != "$%(var)s" ]; then mkdir -p /etc/ssh; '
    '(umask 077; printf "%%s\\n" "$%(var)s" > "$k.rgpu-tmp"); mv -f "$k.rgpu-tmp" "$k"; '
    'rm -f "$k.pub" /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub /etc/ssh/ssh_host_ecdsa_key '
    '/etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_dsa_key /etc/ssh/ssh_host_dsa_key.pub; '
    'if command -v ssh-keygen >/dev/null 2>&1; then ssh-keygen -y -f "$k" > "$k.pub" 2>/dev/null || rm -f "$k.pub"; fi; '
    'if [ -s /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)" 2>/dev/null || true; fi; fi; fi; '
    'unset %(var)s; if [ "$4" = keys ]; then %(keys)s; fi'
) % {"var": HOST_KEY_VARIABLE, "path": SSH_HOST_KEY_PATH, "keys": _AUTHORIZED_KEYS_SCRIPT}


def access_command(keys: list[str] | None, host_key: str | None) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of one exec that installs ``host_key`` (an OpenSSH private
    key) as sshd's host key and ``keys`` as the managed block of root's authorized_keys;
    None leaves that part as it is. The private key travels in the environment only."""
    argv = ["/bin/sh", "-c", _ACCESS_SCRIPT, "remotegpu-access", "\n".join(keys or []),
            AUTHORIZED_KEYS_BEGIN, AUTHORIZED_KEYS_END, "keys" if keys is not None else "-"]
    return argv, ({HOST_KEY_VARIABLE: host_key.strip()} if host_key else {})


def _runtime_name(runtime: object) -> str:
    name = type(runtime).__name__.lower()
    for known in ("docker", "local", "memory", "kubernetes"):
        if known in name:
            return known
    return name


def _cluster_nodes(probe: object) -> list:
    """The cluster's nodes, from a probe that knows them (a Kubernetes cluster's)."""
    nodes = getattr(probe, "cluster_nodes", None)
    return list(nodes()) if nodes is not None else []


def _is_fake(probe: object) -> bool:
    return type(probe).__name__.lower().startswith("fake")
