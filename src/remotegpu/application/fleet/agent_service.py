"""The server's side of the agent conversation: registration, heartbeats, offline hosts.

A heartbeat updates the host's inventory, folds each observed container state into
its environment's status, and answers the desired state of every environment on the
host. Anything that frees capacity lets the queue move.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import timedelta
from typing import Protocol

from remotegpu.application.environments.access_gateway import AccessGateway
from remotegpu.application.environments.entry import entrants
from remotegpu.application.environments.terminal import RUNTIMES_WITHOUT_SSHD

from remotegpu.application.environments.placement import JUPYTER_CONTAINER_PORT, container_ports, release_gpus
from remotegpu.application.environments.ports import LABEL_GPU_MODEL, LABEL_HOST, DataMountSpec, RuntimeSpec, is_pending
from remotegpu.application.environments.secrets import open_variables
from remotegpu.application.environments.service import EnvironmentService
from remotegpu.application.fleet.agent_protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    MISSED_BEATS_BEFORE_OFFLINE,
    DesiredEnvironment,
    HeartbeatReply,
    HostReport,
    ImageJobOrder,
    ObservedEnvironment,
)
from remotegpu.application.identity import audit
from remotegpu.application.shared.change_feed import ChangeFeed, FeedOverflow
from remotegpu.application.identity.secrets import hash_secret, new_secret
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.domain.environments.models import (
    DESKTOP_CONTAINER_PORT,
    Desired,
    Environment,
    EnvironmentEvent,
    EnvStatus,
    vnc_password,
)
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.fleet.addresses import check_address
from remotegpu.domain.fleet.models import MAX_CLUSTER_NODES, Host, HostStatus, QuarantineEntry
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from remotegpu.domain.workloads.models import JobStatus

AGENT_TOKEN_PREFIX = "rga_"
#: Prefix of job nodes in the agent's ``known`` map (long-poll): ``job:<node id>``.
JOB_KEY = "job:"
#: At most this many quarantined environments are kept per host (a report may not flood the row).
MAX_QUARANTINE_ENTRIES = 500
GENERATION_LABEL = "remotegpu.generation"
#: How an agent's observed message starts while it pulls an environment's image.
PULLING = "pulling image"
#: ... and while it downloads the environment's dataset/model mounts into its host cache.
MOUNTING = "mounting data"

log = logging.getLogger(__name__)


def desired_state(env: Environment) -> str:
    """What the host's agent is told to make of the environment."""
    if env.desired is Desired.DELETED:
        return "deleted"
    if env.desired is Desired.RUNNING and env.status.holds_resources:
        return "running"
    return "stopped"


async def _host_of_agent(uow: UnitOfWork, agent_token: str) -> Host:
    host = await uow.hosts.get_by_agent_token(hash_secret(agent_token))
    if host is None:
        raise Unauthenticated("agent token is invalid; register the agent again with a new join token", code="invalid_agent_token")
    return host


def jupyter_base_url(env_id: str) -> str:
    return "/"  # JupyterLab has a host of its own ({env_id}--jupyter.{apps_domain}, see entrypoints/http/apps.py)


class DataMountResolver(Protocol):
    async def resolve(self, workspace_id: str, mounts: list[dict[str, str]]) -> list[tuple[str, str, str, int]]:
        """(target, kind, repository id, version number) of the mounts that resolve now."""
        ...


@dataclass
class AgentService:
    uow: UnitOfWorkFactory
    clock: Clock
    environments: EnvironmentService
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    gateway: AccessGateway | None = None  # None: authorized_keys are not managed
    feed: ChangeFeed | None = None  # None: agents only learn of work on their next heartbeat
    # Every host may report loopback addresses (tests, single-machine development):
    # REMOTEGPU_ALLOW_LOOPBACK_AGENTS. Otherwise only hosts an admin allowed it on.
    allow_loopback: bool = False
    # An environment stopping or being deleted on a host silent for longer than this is
    # finished without it (finish_stranded): nobody is left to ask.
    stranded_after_seconds: float = 600.0
    # Dataset/model mounts (the storage context): resolved into each spec at start. None: none.
    data_mounts: DataMountResolver | None = None
    # The image catalog (application/images/service.py): jobs for agents, their reports,
    # and the registry whose pull credentials agents get. None: no images context.
    images: Any = None
    registry: Any = None
    # Token auth (application/images/registry_access.py): agents get their host's own
    # short-lived credential instead of the registry's pairs. None: static credentials.
    registry_access: Any = None
    # Training-job nodes (application/workloads/heartbeat.py): None = no jobs context.
    training_nodes: Any = None
    # Storage credentials put into each container (application/storage/env_tokens.py):
    # REMOTEGPU_TOKEN scoped to storage and the environment's workspace, REMOTEGPU_URL.
    storage_tokens: Any = None
    public_url: str | None = None
    _pokes: dict = field(default_factory=dict, repr=False)  # host id → event (see poke)

    async def register(self, join_token: str, name: str, report: HostReport) -> tuple[str, str]:
        """Trade the one-time join token for the agent's own token."""
        token = new_secret(AGENT_TOKEN_PREFIX)
        async with self.uow() as uow:
            await uow.lock_scheduling()
            host = await uow.hosts.get_by_join_token(hash_secret(join_token or ""))
            if host is None:
                raise Unauthenticated("join token is invalid or already used", code="invalid_join_token")
            host.join_token_hash = None
            host.agent_token_hash = hash_secret(token)
            await self._apply_report(uow, host, report)
            await uow.hosts.update(host)
            # new capacity: the queue moves as this commits (QueueingUnitOfWork)
            await audit.record(uow, self.clock, "host.registered", target_type="host", target_id=host.id, name=name)
            await uow.commit()
        return host.id, token

    async def heartbeat(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        for attempt in range(3):
            try:
                return await self._heartbeat(agent_token, report)
            except Conflict as exc:
                if exc.code != "conflict" or attempt == 2:
                    raise

    async def _heartbeat(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        reply = await self._heartbeat_environments(agent_token, report)
        if self.images is None:
            return reply
        return await self._image_work(reply, report)

    async def _image_work(self, reply: HeartbeatReply, report: HostReport) -> HeartbeatReply:
        """Image jobs: fold the agent's reports in, hand it what it should run (or stop);
        and the catalog's references, so it says which it has (the scheduler prefers
        those hosts) and pulls those marked preload."""
        from remotegpu.application.images.service import JobUpdate

        host_id = reply.host_id
        await self.images.apply_updates(host_id, [
            JobUpdate(j.job_id, j.status, j.log_from, j.log, j.progress, j.digest, j.size_bytes, j.layers, j.error)
            for j in report.image_jobs
        ])
        auth = self._host_auth(host_id, push=True)
        orders = [
            ImageJobOrder(
                job_id=job.id, kind=job.kind.value, target=job.target, env_id=job.env_id, dockerfile=job.dockerfile,
                context=job.context, base_reference=job.base_reference, timeout_seconds=job.timeout_seconds,
                cpu_cores=job.cpu_cores, memory_gib=job.memory_gib, cancel=job.cancel_requested,
                log_received=job.log_received, auth=auth,
            )
            for job in await self.images.orders_for(host_id)
        ]
        catalog, preload = await self.images.catalog_for_agents()
        await self.images.note_host_images(host_id, report.images)
        return replace(reply, image_jobs=orders, catalog=catalog, preload=preload,
                       registry_auth=self._host_auth(host_id, push=False))

    def _host_auth(self, host_id: str, *, push: bool) -> tuple[str, str, str] | None:
        """(registry, username, password) for this host's agent: with token auth, the
        host's own short-lived credential (the realm decides what it may pull or push);
        otherwise the registry's push or pull pair."""
        if self.registry is None:
            return None
        if self.registry_access is not None:
            auth = self.registry_access.host_credential(host_id)
        else:
            auth = self.registry.push_auth() if push else self.registry.pull_auth()
        return None if auth is None else (auth.registry, auth.username, auth.password)

    async def _heartbeat_environments(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        async with self.uow() as uow:
            await uow.lock_scheduling()
            host = await _host_of_agent(uow, agent_token)
            came_back = await self._apply_report(uow, host, report)
            if report.runtime_healthy:
                await self._note_quarantine(uow, host, report)
            await uow.hosts.update(host)
            observed = {o.env_id: o for o in report.observed}
            desired: list[DesiredEnvironment] = []
            # Whatever this frees (a failure, a host back), the queue moves as it commits.
            for env in await uow.environments.list_for_host(host.id):
                # An agent whose runtime did not answer saw nothing: keep statuses as they are.
                if report.runtime_healthy:
                    self._observe(env, observed.get(env.id), came_back)
                if env.status in (EnvStatus.FAILED,) and env.desired is Desired.RUNNING:
                    env.desired = Desired.STOPPED
                    await release_gpus(uow, env)  # like a stop: ports and disk stay
                if env.status is EnvStatus.DELETED:
                    await uow.allocations.release(env.id)
                await uow.environments.update(env)
                if env.status is not EnvStatus.DELETED:
                    desired.append(await self._desired(uow, env, host))
            desired += await self._deleted_in_quarantine(uow, host, {d.env_id for d in desired})
            job_nodes = await self.training_nodes(uow, host, report) if self.training_nodes is not None else []
            await uow.commit()
        return HeartbeatReply(host_id=host.id, desired=desired, interval_seconds=self.heartbeat_seconds, job_nodes=job_nodes)

    async def wait_for_work(self, agent_token: str, known: dict[str, tuple[str, int]], timeout: float) -> bool:
        """Long-poll between heartbeats: True as soon as the host's desired state differs
        from ``known`` (env id → (desired, generation) of the agent's last reply), False
        after ``timeout`` seconds without such a change.

        The agent then beats at once instead of at its next interval: this is what makes
        "create → container started" take a moment rather than up to a heartbeat.
        The subscription starts before the comparison, so a change committed between
        the agent's last reply and this call is never missed.
        """
        if self.feed is None:
            await asyncio.sleep(timeout)
            return False
        subscription = self.feed.subscribe()
        try:
            known_jobs = {k[len(JOB_KEY):] for k, v in known.items() if k.startswith(JOB_KEY) and v[0] == "running"}
            known = {k: v for k, v in known.items() if not k.startswith(JOB_KEY)}
            async with self.uow() as uow:
                host = await _host_of_agent(uow, agent_token)
                current = {env.id: (desired_state(env), env.generation) for env in await uow.environments.list_for_host(host.id)
                           if env.status is not EnvStatus.DELETED}
            # A "deleted" the agent was told for something in quarantine is not one of the
            # host's environments: it asks for nothing more once the agent removed it.
            known = {k: v for k, v in known.items() if k in current or v[0] != "deleted"}
            if current != known:
                return True
            if self.training_nodes is not None and await self._job_nodes_changed(host.id, known_jobs):
                return True
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            poked = self._pokes.setdefault(host.id, asyncio.Event())
            poked.clear()
            while (remaining := deadline - loop.time()) > 0:
                try:
                    # Job and replica changes are not on the feed: with a jobs context, a
                    # poke from this process wakes the wait, else a look every second.
                    if self.training_nodes is None:
                        change = await asyncio.wait_for(subscription.get(), remaining)
                    else:
                        change = await _first(subscription.get(), poked.wait(), min(remaining, 1.0))
                        if change is _POKED:
                            poked.clear()
                            return True
                except asyncio.TimeoutError:
                    if self.training_nodes is not None and loop.time() < deadline and await self._job_nodes_changed(host.id, known_jobs):
                        return True
                    if loop.time() >= deadline or self.training_nodes is None:
                        return False
                    continue
                except FeedOverflow:
                    return True  # changes were dropped: one of them may be ours
                if change.for_agent and change.host_id == host.id:
                    return True
            return False
        finally:
            subscription.close()

    async def _job_nodes_changed(self, host_id: str, known_running: set[str]) -> bool:
        """Whether the job nodes this host should run differ from those the agent runs."""
        from remotegpu.domain.workloads.models import JobStatus, node_id

        async with self.uow() as uow:
            jobs = await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING])
            services = await uow.inference_services.list_active()
        current = {node_id(j.id, j.attempt, n.rank) for j in jobs for n in j.node_states
                   if n.host_id == host_id and n.state in ("starting", "running")}
        current |= {r.id for s in services for r in s.replicas
                    if r.host_id == host_id and r.state in ("starting", "running", "draining")}
        return current != known_running

    def poke(self, host_ids: set[str] | None = None) -> None:
        """Wake this process's long-polls of these hosts (None: all) at once: their job
        nodes or replicas changed (those are not on the change feed)."""
        for host_id, event in list(self._pokes.items()):
            if host_ids is None or host_id in host_ids:
                event.set()

    async def mark_offline_hosts(self) -> list[str]:
        """Hosts silent for 3 heartbeats go offline; their live environments go lost."""
        cutoff = self.clock.now() - timedelta(seconds=self.heartbeat_seconds * MISSED_BEATS_BEFORE_OFFLINE)
        gone = []
        # Only hosts silent long enough to matter here or to the job nodes' sweep: on a
        # fleet that beats, nothing is loaded and no lock is taken.
        since = cutoff
        if self.training_nodes is not None:
            since = max(since, self.clock.now() - timedelta(seconds=self.training_nodes.lost_after_seconds))
        async with self.uow() as uow:
            silent = await uow.hosts.list_silent_since(since)
            if not silent:
                return gone
            await uow.lock_scheduling()
            silent = await uow.hosts.list_silent_since(since)  # again, under the lock
            for host in silent:
                if host.status is HostStatus.OFFLINE or host.last_heartbeat_at is None or host.last_heartbeat_at >= cutoff:
                    continue
                host.mark_offline()  # keeps the admin's cordon / drain for when it comes back
                await uow.hosts.update(host)
                gone.append(host.id)
                for env in await uow.environments.list_for_host(host.id):
                    if env.status in (EnvStatus.STARTING, EnvStatus.RUNNING):
                        env.transition(EnvStatus.LOST, f"host {host.name} missed {MISSED_BEATS_BEFORE_OFFLINE} heartbeats", self.clock.now())
                        await uow.environments.update(env)
            ended = []
            if self.training_nodes is not None:  # job nodes on hosts silent for too long are lost: their gangs fail (or restart)
                ended = await self.training_nodes.fail_silent_hosts(uow, silent)
            if gone or ended:  # (a commit runs a queue pass: not every few seconds for nothing)
                await uow.commit()
        return gone

    async def finish_stranded(self) -> list[str]:
        """Finish stops and deletes that wait for an agent nobody will hear from.

        On a removed host: a deleting environment is deleted (nothing is left to
        remove), a stopping one is lost (its disk went with the host: only delete is
        left). On a host offline for longer than ``stranded_after_seconds``: deleting →
        deleted (the agent removes the leftovers if the host ever returns, as for any
        environment it is not told to keep) and stopping → stopped (its disk stays on
        the host; the agent stops the container if it returns). Returns the ids.
        Their quota is released with them: storage counts until deleted."""
        cutoff = self.clock.now() - timedelta(seconds=self.stranded_after_seconds)
        finished = []
        async with self.uow() as uow:
            await uow.lock_scheduling()
            waiting = await uow.environments.list_by_status([EnvStatus.DELETING, EnvStatus.STOPPING])
            if not waiting:
                return []
            hosts = {h.id: h for h in await uow.hosts.list()}
            now = self.clock.now()
            for env in waiting:
                host = hosts.get(env.host_id or "")
                if host is None:
                    if env.status is EnvStatus.DELETING:
                        env.transition(EnvStatus.DELETED, "its host was removed: nothing is left to delete", now)
                    else:
                        env.transition(EnvStatus.LOST, "its host was removed, and its disk with it: delete this environment", now)
                elif host.status is HostStatus.OFFLINE and (host.last_heartbeat_at is None or host.last_heartbeat_at < cutoff):
                    minutes = max(1, round(self.stranded_after_seconds / 60))
                    if env.status is EnvStatus.DELETING:
                        env.transition(EnvStatus.DELETED, f"host {host.name} has been offline for over {minutes} min: deleted without it", now)
                    else:
                        env.transition(EnvStatus.STOPPED, f"host {host.name} has been offline for over {minutes} min: stopped; its disk stays there", now)
                else:
                    continue
                await uow.allocations.release(env.id)
                await uow.environments.update(env)
                finished.append(env.id)
            await uow.commit()
        return finished

    # --- quarantine ------------------------------------------------------------------------
    async def _note_quarantine(self, uow: UnitOfWork, host: Host, report: HostReport) -> None:
        """Keep the host's quarantine list as its agent reports it; audit each new entry.

        The agent quarantines (stops and keeps) whatever carries its installation's
        labels but was not asked for; admins see the list on the host and decide."""
        now = self.clock.now()
        before = {q.env_id: q for q in host.quarantined}
        entries = []
        for item in report.quarantined[:MAX_QUARANTINE_ENTRIES]:
            entry = before.get(item.env_id)
            if entry is None:
                entry = QuarantineEntry(item.env_id, item.host_id, now)
                await audit.record(uow, self.clock, "host.quarantined", target_type="host", target_id=host.id,
                                   env_id=item.env_id, made_for_host=item.host_id)
                log.warning("host %s quarantined environment %s (made for host %s): stopped and kept",
                            host.name, item.env_id, item.host_id or "?")
            entries.append(entry)
        host.quarantined = entries

    async def _deleted_in_quarantine(self, uow: UnitOfWork, host: Host, told: set[str]) -> list[DesiredEnvironment]:
        """``deleted`` for what the agent holds in quarantine and the server did mark
        deleted (e.g. the environment of the host id the agent had before it registered
        again, deleted since): the one case where its disk may go."""
        out = []
        for entry in host.quarantined:
            if entry.env_id in told:
                continue
            env = await uow.environments.get(entry.env_id)
            if env is not None and env.desired is Desired.DELETED and env.host_id in (host.id, entry.host_id):
                out.append(DesiredEnvironment(env.id, "deleted", env.generation))
        return out

    # --- helpers ---------------------------------------------------------------------------
    async def _apply_report(self, uow: UnitOfWork, host: Host, report: HostReport) -> bool:
        """Take the report's inventory; True when the host was offline and came back.

        The agent is trusted with its own host only: addresses are checked before
        anything changes (a refused one fails the whole call, nothing is stored), and
        GPUs another host owns stay that host's (Host.take_inventory), the conflict
        recorded on this host and in the audit log when it starts or changes."""
        if not isinstance(report.gpus, list):
            raise InvalidInput("report.gpus must be a list")
        loopback_ok = self.allow_loopback or host.allow_loopback
        address = check_address(report.address, field="report.address", allow_loopback=loopback_ok)
        private_address = check_address(report.private_address, field="report.private_address", allow_loopback=loopback_ok)
        owners = await uow.hosts.gpu_owners(g.uuid for g in report.gpus)
        if host.take_inventory(list(report.gpus), owners):
            await audit.record(
                uow, self.clock, "host.gpu_conflict" if host.gpu_conflicts else "host.gpu_conflict_cleared",
                target_type="host", target_id=host.id, conflicts=dict(host.gpu_conflicts),
            )
        host.cpu_cores, host.memory_gib, host.disk_gib = report.cpu_cores, report.memory_gib, report.disk_gib
        host.runtime, host.runtime_healthy, host.fake_gpus = report.runtime, report.runtime_healthy, report.fake_gpus
        host.gpu_utilization = {uuid: pct for uuid, pct in report.utilization.items() if uuid not in host.gpu_conflicts}
        host.cluster_nodes = list(report.cluster_nodes[:MAX_CLUSTER_NODES])
        if address:
            host.address = address
        if private_address:
            host.private_address = private_address
        host.last_heartbeat_at = self.clock.now()
        return host.mark_online()  # offline → the admin's choice (ready, cordoned or draining)

    def _observe(self, env: Environment, seen: ObservedEnvironment | None, host_came_back: bool) -> bool:
        """Fold what the agent saw into the environment's status; True when capacity was freed."""
        now = self.clock.now()
        state = seen.status if seen else "missing"
        if seen is not None and state == "running" and seen.ssh_sessions > 0:
            # Someone is logged in over SSH: that is use, like Jupyter or the terminal.
            env.last_activity_at = now
            env.idle_since = None
        current_generation = seen is not None and (seen.generation is None or seen.generation == env.generation)
        if env.status is EnvStatus.STARTING:
            if seen is not None and is_pending(state, seen.message) and seen.message != env.status_message:
                # Its runtime's scheduler cannot place it yet (Kubernetes): show the reason.
                env.pending_events.append(EnvironmentEvent(new_id(), env.id, now, env.status, env.status, seen.message))
                env.status_message = seen.message
            if seen is not None and state == "missing" and seen.message.startswith((PULLING, MOUNTING)) \
                    and seen.message != env.status_message:
                # The agent is pulling its image or downloading its mounts: progress goes
                # to the events (the agent reports it in steps, so these stay few).
                env.pending_events.append(EnvironmentEvent(new_id(), env.id, now, env.status, env.status, seen.message))
                env.status_message = seen.message
            if state == "running" and current_generation:
                env.transition(EnvStatus.RUNNING, "container is running", now)
            elif state == "failed":
                env.transition(EnvStatus.FAILED, f"container failed to start: {seen.message}", now)
                return True
        elif env.status is EnvStatus.RUNNING:
            if state == "failed":
                env.transition(EnvStatus.FAILED, f"container failed: {seen.message}", now)
                return True
            if state != "running":
                env.transition(EnvStatus.STARTING, "container was not running; starting it again", now)
        elif env.status is EnvStatus.LOST:
            if env.desired is Desired.RUNNING:
                if state == "running":
                    env.transition(EnvStatus.RUNNING, "host is back; container is running", now)
                else:
                    env.transition(EnvStatus.STARTING, "host is back; starting the container again", now)
            elif env.desired is Desired.STOPPED:
                env.transition(EnvStatus.STOPPING, "host is back; stopping", now)
        elif env.status is EnvStatus.STOPPING:
            if state in ("stopped", "missing", "failed") and not (seen is not None and is_pending(state, seen.message)):
                env.transition(EnvStatus.STOPPED, "container stopped; disk kept", now)
        elif env.status is EnvStatus.DELETING:
            if state == "missing" and not (seen is not None and is_pending(state, seen.message)):
                env.transition(EnvStatus.DELETED, "container and volume removed", now)
        return False

    async def _desired(self, uow: UnitOfWork, env: Environment, host: Host) -> DesiredEnvironment:
        state = desired_state(env)
        if state == "deleted":
            return DesiredEnvironment(env.id, "deleted", env.generation)
        if state == "running":
            host_key = await self._ssh_host_key(uow, env, host)
            keys = None
            if self.gateway is not None:
                keys = (await self.gateway.provision(env, await entrants(uow, env))).authorized_keys
            return DesiredEnvironment(env.id, "running", env.generation, await self._spec(uow, env, host), keys, host_key)
        return DesiredEnvironment(env.id, "stopped", env.generation)

    async def _ssh_host_key(self, uow: UnitOfWork, env: Environment, host: Host) -> str | None:
        """The private host key the agent installs (None for runtimes without sshd).
        Environments made before per-environment keys get theirs here, on the first beat
        that wants them running (see ``EnvironmentCredentials``)."""
        credentials = self.environments.credentials
        if credentials is None:
            return None
        if credentials.ensure(env):
            await uow.environments.update(env)
        if host.runtime in RUNTIMES_WITHOUT_SSHD:
            return None
        return credentials.host_private_key(env)

    async def _spec(self, uow: UnitOfWork, env: Environment, host: Host) -> RuntimeSpec:
        gpus = {a.gpu_uuid for a in await uow.allocations.gpus_of(env.id)}
        chosen = sorted((g for g in host.gpus if g.uuid in gpus), key=lambda g: g.index)
        ports = container_ports(await uow.allocations.ports_of(env.id))
        return RuntimeSpec(
            env_id=env.id, image=env.image, cpu_cores=float(env.cpu_cores), memory_gib=float(env.memory_gib),
            gpu_uuids=[g.uuid for g in chosen], gpu_indices=[g.index for g in chosen], fake_gpus=host.fake_gpus,
            env={
                **env.env,
                **open_variables(self.environments.secrets, env.id, env.secret_env),  # secrets: opened only here
                "REMOTEGPU_ENV_ID": env.id,
                "REMOTEGPU_JUPYTER_TOKEN": env.jupyter_token,
                "REMOTEGPU_JUPYTER_BASE_URL": jupyter_base_url(env.id),
                **self._storage_variables(env),
                **({"REMOTEGPU_VNC_PASSWORD": vnc_password(env.jupyter_token)} if DESKTOP_CONTAINER_PORT in ports else {}),
            },
            ports=ports,
            private_ports=frozenset({JUPYTER_CONTAINER_PORT, DESKTOP_CONTAINER_PORT}) & ports.keys(),
            labels={GENERATION_LABEL: str(env.generation), LABEL_HOST: host.id,
                    **({LABEL_GPU_MODEL: chosen[0].model} if chosen else {})},
            disk_gib=env.disk_gib,
            workspace_id=env.workspace_id,
            data_mounts=await self._data_mounts(env),
            shared_disk_gib=await self._shared_disk(env),
            registry_auth=self._pull_auth(env.image, host.id),
        )

    def _storage_variables(self, env: Environment) -> dict[str, str]:
        """`remotegpu dataset push` inside the container: a token of this run (derived, never stored)."""
        if self.storage_tokens is None:
            return {}
        found = {"REMOTEGPU_TOKEN": self.storage_tokens.issue(env.id, env.generation), "REMOTEGPU_WORKSPACE_ID": env.workspace_id}
        if self.public_url:
            found["REMOTEGPU_URL"] = self.public_url.rstrip("/")
        return found

    async def _shared_disk(self, env: Environment) -> int | None:
        """The workspace's shared disk (storage context), at /root/shared; None: none."""
        sized = getattr(self.data_mounts, "shared_disk_gib", None)
        return await sized(env.workspace_id) if sized is not None else None

    async def _data_mounts(self, env: Environment) -> tuple[DataMountSpec, ...]:
        if not env.data_mounts or self.data_mounts is None:
            return ()
        resolved = await self.data_mounts.resolve(env.workspace_id, env.data_mounts)
        return tuple(DataMountSpec(target, kind, repo_id, version) for target, kind, repo_id, version in resolved)

    async def agent_may_read(self, agent_token: str, repository_id: str) -> None:
        """Agents read the versions that environments placed on their own host mount (else NotFound)."""
        async with self.uow() as uow:
            host = await _host_of_agent(uow, agent_token)
            for env in await uow.environments.list_for_host(host.id):
                if any(m.get("repository_id") == repository_id for m in env.data_mounts):
                    return
            if self.training_nodes is not None:  # job nodes and inference replicas placed here
                for job in await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING]):
                    if any(n.host_id == host.id for n in job.node_states) and \
                            any(m.get("repository_id") == repository_id for m in job.data_mounts):
                        return
                for service in await uow.inference_services.list_active():
                    if any(r.host_id == host.id for r in service.replicas) and \
                            any(m.get("repository_id") == repository_id for m in service.data_mounts):
                        return
        raise NotFound("not mounted on this host")

    def _pull_auth(self, image: str, host_id: str) -> tuple[str, str, str] | None:
        """The registry's pull credentials for an image it holds (agents only: never in
        the container, never shown to users)."""
        if self.registry is None or not self.registry.owns(image):
            return None
        return self._host_auth(host_id, push=False)


_POKED = object()


async def _first(get, poked, timeout: float):
    """The next change from ``get``, or ``_POKED`` when ``poked`` fires first; TimeoutError after ``timeout``."""
    tasks = [asyncio.ensure_future(get), asyncio.ensure_future(poked)]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    if tasks[0] in done:
        return tasks[0].result()
    if tasks[1] in done:
        return _POKED
    raise asyncio.TimeoutError
