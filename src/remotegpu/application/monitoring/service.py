"""Ingestion of agents' samples, and the queries users and admins make.

Ingestion tags every row with what the server itself knows: a GPU's samples belong to
the environment its allocation names at that moment (and that environment's
workspace); a container's samples to the environment the agent names only when that
environment is placed on the reporting host — or, for a training-job node's or an
inference replica's container, to its job or service when that node is placed there. Anything else an agent sends about other
hosts' environments is dropped — an agent is trusted with its own host only.

Queries are authorized like the objects: an environment's metrics for whoever may see
the environment (another tenant's: 404), a workspace's for its members, a host's and
the fleet's for platform admins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from remotegpu.application.identity.admin import require_admin
from remotegpu.application.monitoring.ports import MetricsStore, Series, SeriesFilter
from remotegpu.application.shared.ports import UnitOfWorkFactory
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.monitoring import metrics as m
from remotegpu.application.identity.secrets import hash_secret
from remotegpu.domain.shared.errors import InvalidInput, NotFound, Unauthenticated
from remotegpu.domain.workloads.models import JobStatus, node_id
from remotegpu.domain.workspaces.models import Role

SCOPES = ("environment", "workspace", "host", "fleet", "job", "service")
#: Rows further in the past / future than this (seconds) are refused: a clock far off.
MAX_AGE_SECONDS = 3600
MAX_AHEAD_SECONDS = 300
#: How long the host → (environment, workspace) tagging is cached per host (seconds).
TAGS_TTL_SECONDS = 5.0
#: "Latest" means at most this old (seconds).
LATEST_WINDOW_SECONDS = 300


@dataclass
class _HostTags:
    at: float
    env_workspace: dict[str, str]  # env id on this host → workspace id
    gpu_env: dict[str, str]  # GPU uuid → env id holding it
    gpus: frozenset[str] = frozenset()  # the GPUs of this host's inventory
    # Job nodes and inference replicas placed on this host: container (node) id → the
    # job's or service's id, which their container samples carry (in the environment tag).
    node_owner: dict[str, str] = field(default_factory=dict)


@dataclass
class _FleetTags:
    at: float
    hosts: dict[str, _HostTags]
    tokens: dict[str, str]  # agent token hash → host id


def _tags_of(now: float, host_id: str, host: Any, envs: list, allocations: list, jobs: list, services: list) -> _HostTags:
    """A host's tagging: its environments' GPUs (allocations on this host of environments
    placed here and holding resources), then its training-job nodes' and inference
    replicas' GPUs and containers (their samples carry the job's or the service's id)."""
    gpu_env: dict[str, str] = {}
    here = {e.id for e in envs if e.status.holds_resources}
    for a in allocations:
        if a.host_id == host_id and a.environment_id in here:
            gpu_env[a.gpu_uuid] = a.environment_id
    owners = {e.id: e.workspace_id for e in envs}
    node_owner: dict[str, str] = {}
    for job in jobs:
        for node in job.node_states:
            if node.host_id == host_id:
                owners[job.id] = job.workspace_id
                gpu_env.update({g: job.id for g in node.gpu_uuids})
                node_owner[node_id(job.id, job.attempt, node.rank)] = job.id
    for service in services:
        for replica in service.replicas:
            if replica.host_id == host_id:
                owners[service.id] = service.workspace_id
                gpu_env.update({g: service.id for g in replica.gpu_uuids})
                node_owner[replica.id] = service.id
    return _HostTags(now, owners, gpu_env, frozenset(g.uuid for g in host.gpus) if host is not None else frozenset(),
                     node_owner)


@dataclass
class MetricsService:
    uow: UnitOfWorkFactory
    store: MetricsStore
    wall: Callable[[], float] = time.time
    _tags: dict[str, _HostTags] = field(default_factory=dict)
    _token_hosts: dict[str, tuple[str, float]] = field(default_factory=dict)  # token hash → (host id, when read)
    _fleet_tags: "_FleetTags | None" = None
    _fleet_reading: bool = False
    _fleet_generation: int = 0

    # --- ingestion --------------------------------------------------------------------

    async def ingest(self, host_id: str, rows: list[Any]) -> int:
        """Store an agent's rows ``[ts, metric, value, env_id, gpu_uuid]``; returns how
        many were kept. A malformed row answers 422 (nothing stored); rows about
        environments not on this host, or too old/new, are dropped.

        One pass per row, straight into ``Sample`` tuples (no intermediate rows, no
        per-row objects beyond the sample): this loop is the server's share of a batch."""
        now = self.wall()
        if not isinstance(rows, list):
            raise InvalidInput("metrics must be a list of rows", code="invalid_metrics")
        tags = await self._host_tags(host_id, now)
        gpus, gpu_env, env_ws, node_owner = tags.gpus, tags.gpu_env, tags.env_workspace, tags.node_owner
        lo, hi = now - MAX_AGE_SECONDS, now + MAX_AHEAD_SECONDS
        known, quantize, isfinite, sample = m.METRICS, m.quantize, math.isfinite, m.Sample
        # ``tuple.__new__(Sample, fields)`` makes the same named tuple without the Python
        # frame of ``Sample.__new__`` (a seventh of the server's time per sample).
        new = tuple.__new__
        samples = []
        append = samples.append
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != 5:
                raise InvalidInput(f"metrics[{i}]: expected [ts, metric, value, env_id, gpu_uuid]", code="invalid_metrics")
            ts, metric, value, env_id, gpu_uuid = row
            tt, tv = type(ts), type(value)
            if ((tt is not float and tt is not int) or (tv is not float and tv is not int) or type(metric) is not str
                    or metric not in known or type(env_id) is not str or type(gpu_uuid) is not str
                    or len(env_id) > 64 or len(gpu_uuid) > 64):
                raise InvalidInput(f"metrics[{i}]: bad row {str(row)[:200]}", code="invalid_metrics")
            if not (isfinite(ts) and isfinite(value)):
                raise InvalidInput(f"metrics[{i}]: not finite", code="invalid_metrics")
            if not lo <= ts <= hi:
                continue
            if gpu_uuid:
                if gpu_uuid not in gpus:
                    continue  # not this host's GPU: an agent speaks for its own host only
                env_id = gpu_env.get(gpu_uuid, "")
            elif env_id not in env_ws:
                env_id = node_owner.get(env_id, "")  # a job node's or replica's container: its job's, its service's
                if not env_id:
                    continue
            append(new(sample, (float(ts), metric, quantize(value), host_id, env_id, env_ws.get(env_id, ""), gpu_uuid)))
        if samples:
            await self.store.write(samples)
        return len(samples)

    async def ingest_from_agent(self, agent_token: str, rows: list[Any]) -> int:
        """``ingest`` for the host whose agent token this is (Unauthenticated otherwise).

        The token → host answer is cached for ``TAGS_TTL_SECONDS`` like the tagging (a
        batch every second per host would otherwise cost a query each): a token revoked
        a moment ago still gets its last few batches stored, nothing more."""
        now = self.wall()
        digest = hash_secret(agent_token)
        cached = self._token_hosts.get(digest)
        if cached is not None and now - cached[1] < TAGS_TTL_SECONDS:
            return await self.ingest(cached[0], rows)
        host_id = (await self._fleet(now)).tokens.get(digest)
        if host_id is not None:
            return await self.ingest(host_id, rows)
        async with self.uow() as uow:
            host = await uow.hosts.get_by_agent_token(digest)
        if host is None:
            self._token_hosts.pop(digest, None)
            raise Unauthenticated("agent token is invalid; register the agent again with a new join token",
                                  code="invalid_agent_token")
        if len(self._token_hosts) > 10_000:
            self._token_hosts.clear()
        self._token_hosts[digest] = (host.id, now)
        return await self.ingest(host.id, rows)

    async def _host_tags(self, host_id: str, now: float) -> _HostTags:
        fleet = await self._fleet(now)
        tags = fleet.hosts.get(host_id)
        if tags is not None:
            return tags
        # A host the snapshot does not know (registered since): read on its own, cached.
        cached = self._tags.get(host_id)
        if cached is not None and now - cached.at < TAGS_TTL_SECONDS:
            return cached
        async with self.uow() as uow:
            host = await uow.hosts.get(host_id)
            envs = await uow.environments.list_for_host(host_id)
            allocations = [a for env in envs if env.status.holds_resources for a in await uow.allocations.gpus_of(env.id)]
            jobs = await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING])
            services = await uow.inference_services.list_active()
        tags = _tags_of(now, host_id, host, envs, allocations, jobs, services)
        if len(self._tags) > 10_000:
            self._tags.clear()
        self._tags[host_id] = tags
        return tags

    async def _fleet(self, now: float) -> "_FleetTags":
        """Every host's tagging and agent token, read at most once per ``TAGS_TTL_SECONDS``
        for the whole fleet in six queries (not six or more per host and batch: with agents
        sending every 10 s, a per-host cache of 5 s missed on every batch)."""
        fleet = self._fleet_tags
        if fleet is not None and (now - fleet.at < TAGS_TTL_SECONDS or self._fleet_reading):
            return fleet  # fresh, or another request is reading it anew: this one keeps the last
        self._fleet_reading = True
        generation = self._fleet_generation
        try:
            async with self.uow() as uow:
                hosts = await uow.hosts.list()
                envs = await uow.environments.list_by_status([s for s in EnvStatus if s is not EnvStatus.DELETED])
                allocations = await uow.allocations.gpus()
                jobs = await uow.training_jobs.list_by_status([JobStatus.STARTING, JobStatus.RUNNING])
                services = await uow.inference_services.list_active()
            by_host: dict[str, list] = {}
            for env in envs:
                if env.host_id:
                    by_host.setdefault(env.host_id, []).append(env)
            holding = {e.id for e in envs if e.status.holds_resources}
            allocs: dict[str, list] = {}
            for a in allocations:
                if a.environment_id in holding:
                    allocs.setdefault(a.host_id, []).append(a)
            fleet = _FleetTags(
                now, {h.id: _tags_of(now, h.id, h, by_host.get(h.id, []), allocs.get(h.id, []), jobs, services) for h in hosts},
                {h.agent_token_hash: h.id for h in hosts if h.agent_token_hash})
            if generation == self._fleet_generation:  # not forgotten meanwhile (forget_tags)
                self._fleet_tags = fleet
            return fleet
        finally:
            self._fleet_reading = False

    def forget_tags(self, host_id: str | None = None) -> None:
        """Drop cached tagging (tests, or after an allocation change one wants seen at once)."""
        self._token_hosts.clear()
        self._fleet_tags = None
        self._fleet_generation += 1
        if host_id is None:
            self._tags.clear()
        else:
            self._tags.pop(host_id, None)

    async def fleet_latest(self, window_seconds: float = 120.0) -> list[m.Sample]:
        """Every series' latest sample (``/metrics``: the caller is already an admin or
        the scrape token)."""
        return _newest_per_gpu(await self.store.latest(SeriesFilter(), since=self.wall() - window_seconds))

    # --- queries ----------------------------------------------------------------------

    async def scope_filter(self, actor: User, scope: str, scope_id: str | None) -> SeriesFilter:
        """The series ``actor`` may read in ``scope``: NotFound for an environment or
        workspace they cannot see, PermissionDenied for hosts and the fleet unless admin."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", details={"field": "scope"})
        if scope in ("environment", "workspace", "host", "job", "service") and not scope_id:
            raise InvalidInput(f"scope {scope} needs id", details={"field": "id"})
        if scope in ("host", "fleet"):
            require_admin(actor)
            return SeriesFilter(host_id=scope_id) if scope == "host" else SeriesFilter()
        async with self.uow() as uow:
            if scope == "workspace":
                await authorize(uow, actor, scope_id, Role.VIEWER)
                return SeriesFilter(workspace_id=scope_id)
            if scope in ("job", "service"):  # the GPUs its nodes or replicas held
                found = await (uow.training_jobs if scope == "job" else uow.inference_services).get(scope_id)
                if found is None or getattr(found.status, "value", "") == "deleted":
                    raise NotFound(f"{'training job' if scope == 'job' else 'inference service'} not found")
                await authorize(uow, actor, found.workspace_id, Role.VIEWER)  # NotFound outside its workspace
                return SeriesFilter(env_id=scope_id)
            env = await uow.environments.get(scope_id)
            if env is None or env.status is EnvStatus.DELETED:
                raise NotFound("environment not found")
            await authorize(uow, actor, env.workspace_id, Role.VIEWER)  # NotFound outside its workspace
            return SeriesFilter(env_id=scope_id)

    async def latest(self, actor: User, scope: str, scope_id: str | None, metrics: list[str] | None = None) -> list[m.Sample]:
        flt = await self.scope_filter(actor, scope, scope_id)
        for name in metrics or []:
            m.check_metric(name)
        return _newest_per_gpu(await self.store.latest(flt, since=self.wall() - LATEST_WINDOW_SECONDS, metrics=metrics or None))

    async def history(self, actor: User, scope: str, scope_id: str | None, metric: str, start: datetime | float | None,
                      end: datetime | float | None, step: int | None) -> tuple[list[Series], float, float, int]:
        """(series, start, end, step): ``end`` defaults to now, ``start`` to an hour
        before it, ``step`` to what gives about 360 points (at least 1 s)."""
        m.check_metric(metric)
        flt = await self.scope_filter(actor, scope, scope_id)
        now = self.wall()
        end_ts = _ts(end) if end is not None else now
        start_ts = _ts(start) if start is not None else end_ts - 3600
        if not (math.isfinite(start_ts) and math.isfinite(end_ts)) or end_ts <= start_ts:
            raise InvalidInput("from must be before to", details={"field": "from"})
        if step is None:
            step = max(1, int(math.ceil((end_ts - start_ts) / 360)))
        if step < 1:
            raise InvalidInput("step must be at least 1 second", details={"field": "step"})
        if (end_ts - start_ts) / step > m.MAX_POINTS:
            raise InvalidInput(f"at most {m.MAX_POINTS} points per series: raise step", code="too_many_points",
                               details={"field": "step"})
        return await self.store.history(flt, metric, start_ts, end_ts, step, now=now), start_ts, end_ts, step


def _newest_per_gpu(samples: list[m.Sample]) -> list[m.Sample]:
    """A GPU that changed hands lately has a series per holder: only the newest one is
    its latest value (container series are per environment anyway)."""
    newest: dict[tuple, m.Sample] = {}
    rest = []
    for s in samples:
        if not s.gpu_uuid:
            rest.append(s)
            continue
        key = (s.metric, s.host_id, s.gpu_uuid)
        if key not in newest or newest[key].ts < s.ts:
            newest[key] = s
    return sorted([*newest.values(), *rest], key=lambda s: s.series)


def _ts(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)
