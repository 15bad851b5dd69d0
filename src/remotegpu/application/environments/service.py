"""Environment use cases: create, list, start, stop, restart, delete, events.

Each use case writes *desired* state (and allocations) in one transaction under the
scheduling lock; the host agent makes the runtime match on its next heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Hashable
from typing import Any, Protocol

from remotegpu.application.environments import placement as pl
from remotegpu.application.environments.access import load_operable, may_operate
from remotegpu.application.environments.credentials import EnvironmentCredentials
from remotegpu.application.environments.secrets import seal_variables
from remotegpu.application.environments.queue_pass import QueuePass
from remotegpu.application.environments.ports import EnvironmentListing
from remotegpu.application.shared.ports import Clock, UnitOfWork, UnitOfWorkFactory
from remotegpu.application.shared.read_cache import EpochCache, HotReads, Memo
from remotegpu.application.shared.sealing import SecretSealer
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import authorize, authorize_hot
from remotegpu.domain.environments.images import ImagePolicy
from remotegpu.domain.environments.models import (
    DEFAULT_DISK_GIB,
    Desired,
    Environment,
    EnvironmentEvent,
    EnvStatus,
    HostPort,
    validate_request,
)
from remotegpu.domain.environments.variables import check_variables
from remotegpu.domain.fleet.models import Gpu, Host, HostStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.scheduling import PlacementRequest, QueuedRequest
from remotegpu.domain.scheduling.headroom import ModelHeadroom, ever_fits, headroom_for, largest_host, newcomer_view
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Role
from remotegpu.domain.workspaces.quota import Usage

RETRIES = 5


@dataclass(frozen=True)
class CreateRequest:
    workspace_id: str
    name: str
    image: str | None = None
    gpu_count: int = 0
    gpu_model: str | None = None
    cpu_cores: int = 2
    memory_gib: int = 8
    disk_gib: int = DEFAULT_DISK_GIB
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)  # write-only: sealed at once, never shown
    stop_after_minutes: int | None = None
    idle_stop_minutes: int | None = None
    idle_gpu_threshold: int = 5
    shared: bool = False
    # Dataset/model versions to mount read-only: {"kind", "name" (or id), "version"} each.
    mounts: list[dict[str, str]] = field(default_factory=list)
    image_id: str | None = None  # a catalog image (instead of ``image``)


class DataMountPolicy(Protocol):
    """Checks what an environment may mount (the storage context answers)."""

    async def check_mounts(self, actor: User, workspace_id: str, requests: list[dict[str, str]]) -> list[dict[str, str]]: ...

    async def storage_gib_held(self, workspace_id: str) -> int:
        """GiB of storage_gib the workspace holds outside its environments' disks: its shared
        disk's size and its datasets' and models' bytes (rounded up)."""
        ...


def _manage_mode(actor: User, role: Role | None) -> Hashable:
    """Callers for whom ``may_operate`` answers alike for every environment of a page:
    all of them, none, or those the caller owns."""
    if actor.is_admin or (role is not None and role.at_least(Role.ADMIN)):
        return "all"
    if role is None or not role.at_least(Role.MEMBER):
        return "none"
    return ("own", actor.id)


@dataclass(frozen=True)
class EnvironmentView:
    env: Environment
    queue_position: int | None
    ports: list[HostPort]
    host: Host | None  # loaded where the host itself is needed (access info); lists and details carry host_name only
    gpus: list[Gpu] = field(default_factory=list)
    # The viewer may operate it (access.may_operate): only then are plain variables' values shown.
    manageable: bool = False
    host_name: str | None = None

    def __post_init__(self) -> None:
        if self.host is not None and self.host_name is None:
            object.__setattr__(self, "host_name", self.host.name)

    @classmethod
    def of(cls, listing: EnvironmentListing) -> "EnvironmentView":
        return cls(listing.env, listing.queue_position, listing.ports, None, listing.gpus, host_name=listing.host_name)


@dataclass
class EnvironmentService:
    uow: UnitOfWorkFactory
    clock: Clock
    default_image: str = "remotegpu/base:latest"
    # Per-environment SSH keys, made at creation (None: none, e.g. unit tests of other rules).
    credentials: EnvironmentCredentials | None = None
    quotas: WorkspacePolicy = field(default_factory=WorkspacePolicy)  # the workspace's quota and its owners' caps
    images: ImagePolicy | None = None  # None: any well-formed image (tests); the server always sets one
    secrets: SecretSealer | None = None  # None: secret variables are refused
    # Units of work for the read-only use cases (list, get, events, gpu-types): cheaper where
    # the adapter can skip the transaction; None: ``uow``.
    reads: UnitOfWorkFactory | None = None
    data_mounts: DataMountPolicy | None = None  # None: mounts are refused
    # Pay-as-you-go (application/billing/funds.py): refuses to create or start a GPU
    # environment without a positive balance; None: billing is off.
    funds: Any = None
    # Listings, timelines and the fleet's capacity as of the committed change epoch
    # (application/shared/read_cache.py): exact, shared by every request until a change.
    cache: EpochCache = field(default_factory=EpochCache)
    # The cached reads' membership check and epoch in one statement without a unit of
    # work (application/shared/read_cache.py's HotReads); None: through ``reads``.
    gate: HotReads | None = None
    # A cached page's views, per kind of caller (``_manage_mode``): built once per answer.
    _views: Memo = field(default_factory=Memo, repr=False)
    _workspace_of: dict[str, str] = field(default_factory=dict, repr=False)  # environment → its workspace (fixed)
    # The image catalog (application/images): ``image_id`` and catalog references resolve
    # there; another workspace's private image answers 404. None: references only.
    catalog: Any = None

    # --- user-facing use cases ---------------------------------------------------------
    async def create(self, actor: User, req: CreateRequest) -> EnvironmentView:
        validate_request(req.gpu_count, req.cpu_cores, req.memory_gib, req.name, req.disk_gib)
        check_variables(req.env, req.secret_env)
        if req.secret_env and self.secrets is None:
            raise InvalidInput("secret variables are not available on this server", details={"field": "secret_env"})
        if req.image_id is not None and req.image is not None:
            raise InvalidInput("give image or image_id, not both", details={"field": "image_id"})
        from_catalog = None
        if self.catalog is not None and (req.image_id is not None or req.image is not None):
            from_catalog = await self.catalog.resolve(actor, req.workspace_id, image_id=req.image_id, reference=req.image)
        elif req.image_id is not None:
            raise InvalidInput("there is no image catalog here: give image", details={"field": "image_id"})
        if from_catalog is not None:
            req = replace(req, image=from_catalog, image_id=None)  # the catalog vouches for it
        elif self.images is not None:
            self.images.check(req.image or self.default_image)
        mounts: list[dict[str, str]] = []
        if req.mounts:
            if self.data_mounts is None:
                raise InvalidInput("dataset and model mounts are not available on this server", details={"field": "mounts"})
            mounts = await self.data_mounts.check_mounts(actor, req.workspace_id, req.mounts)
        # The workspace's images take storage too (issue 15): counted with the new disk.
        images_gib = await self.catalog.workspace_image_gib(req.workspace_id) if self.catalog is not None else 0
        # So do its shared disk and its datasets and models (issue 14).
        if self.data_mounts is not None:
            images_gib += await self.data_mounts.storage_gib_held(req.workspace_id)
        for attempt in range(RETRIES):
            try:
                async with self.uow() as uow:
                    await uow.lock_scheduling()
                    await authorize(uow, actor, req.workspace_id, Role.MEMBER)
                    await self.quotas.check(uow, req.workspace_id, Usage(
                        gpus=req.gpu_count, environments=1, cpu_cores=req.cpu_cores, memory_gib=req.memory_gib,
                        storage_gib=req.disk_gib + images_gib,
                    ))
                    await self._refuse_never_fits(uow, req)
                    if self.funds is not None and req.gpu_count:
                        await self.funds.check(req.workspace_id, gpu_model=req.gpu_model, gpu_count=req.gpu_count,
                                               cpu_cores=req.cpu_cores, memory_gib=req.memory_gib, disk_gib=req.disk_gib)
                    env = self._new(actor, req)
                    env.data_mounts = mounts
                    if self.credentials is not None:
                        self.credentials.ensure(env)  # known_hosts is in the access info at once
                    await uow.environments.add(env)
                    await self._place_or_queue(uow, env, "created")
                    await uow.environments.update(env)
                    await uow.commit()
                return await self.get(actor, env.id)
            except Conflict as exc:
                if exc.code != "conflict" or attempt == RETRIES - 1:
                    raise  # a lost allocation race ("conflict") is retried; domain conflicts are not

    async def list(
        self, actor: User, *, workspace_id: str | None, statuses: list[EnvStatus] | None, limit: int, offset: int
    ) -> tuple[list[EnvironmentView], int]:
        """The hottest read (the console polls it): a bounded number of queries whatever
        the page's length (``EnvironmentRepository.listings``)."""
        shape = tuple(s.value for s in statuses) if statuses is not None else None
        if workspace_id is not None and self.gate is not None:
            role, epoch = await authorize_hot(self.gate, actor, workspace_id, Role.VIEWER)  # every request: never cached

            async def compute():
                async with self._reads() as uow:
                    return await uow.environments.listings(workspace_id=workspace_id, statuses=statuses, limit=limit, offset=offset)

            answer = await self.cache.get_or_compute(epoch, ("list", workspace_id, shape, limit, offset), compute)
            # Whether the caller may operate each environment depends on the role and, for
            # members, on who owns it: the views of one answer are the same for every caller
            # of the same kind, so they are built once per answer and kind.
            mode = _manage_mode(actor, role)
            return self._views.get(answer, mode, lambda: (
                [EnvironmentView(item.env, item.queue_position, item.ports, None, item.gpus,
                                 manageable=may_operate(actor, role, item.env), host_name=item.host_name)
                 for item in answer[0]],
                answer[1],
            ))
        async with self._reads() as uow:
            if workspace_id is not None:
                membership = await authorize(uow, actor, workspace_id, Role.VIEWER)  # every request: never cached
                roles = {workspace_id: membership.role}
                listings, total = await self.cache.get_or_compute(
                    await uow.environments.change_epoch(), ("list", workspace_id, shape, limit, offset),
                    lambda: uow.environments.listings(workspace_id=workspace_id, statuses=statuses, limit=limit, offset=offset),
                )
            else:
                listings, total = await self.cache.get_or_compute(
                    await uow.environments.change_epoch(), ("mine", actor.id, shape, limit, offset),
                    lambda: uow.environments.listings(member_id=actor.id, statuses=statuses, limit=limit, offset=offset),
                )
                # The caller's role in each workspace on this page: whether they see plain values.
                roles = {}
                for ws_id in {item.env.workspace_id for item in listings}:
                    roles[ws_id] = (await authorize(uow, actor, ws_id, Role.VIEWER)).role
        return [
            EnvironmentView(item.env, item.queue_position, item.ports, None, item.gpus,
                            manageable=may_operate(actor, roles.get(item.env.workspace_id), item.env),
                            host_name=item.host_name)
            for item in listings
        ], total

    async def get(self, actor: User, env_id: str, *, with_host: bool = False) -> EnvironmentView:
        """One environment as lists show it; ``with_host`` also loads its host (access info needs its addresses)."""
        workspace_id = self._workspace_of.get(env_id)
        if workspace_id is not None and self.gate is not None and not with_host:
            listing, role, _ = await self._visible_listing_hot(actor, env_id, workspace_id)
            mode = _manage_mode(actor, role)
            return self._views.get(listing, mode, lambda: replace(
                EnvironmentView.of(listing), manageable=may_operate(actor, role, listing.env)))
        async with self._reads() as uow:
            listing, role, _ = await self._visible_listing(uow, actor, env_id)
            view = replace(EnvironmentView.of(listing), manageable=may_operate(actor, role, listing.env))
            if with_host and view.env.host_id is not None:
                view = replace(view, host=await uow.hosts.get(view.env.host_id))
            return view

    async def _visible_listing(
        self, uow: UnitOfWork, actor: User, env_id: str
    ) -> tuple[EnvironmentListing, Role | None, int | None]:
        """The environment as of the committed epoch, the caller's role in its workspace,
        and that epoch (NotFound when deleted, unknown, or outside the caller's workspaces).

        An environment never changes workspace: once its workspace is known, the
        membership check comes first and reads the epoch in the same statement (one
        statement when the answer is cached); otherwise the epoch, the listing, then it."""
        workspace_id = self._workspace_of.get(env_id)
        if workspace_id is not None and self.gate is not None:
            return await self._visible_listing_hot(actor, env_id, workspace_id)
        if workspace_id is not None:
            membership = await authorize(uow, actor, workspace_id, Role.VIEWER)  # every request: never cached
            epoch = await uow.environments.change_epoch()
            listing = await self.cache.get_or_compute(epoch, ("one", env_id), lambda: self._listing_now(uow, env_id))
            if listing is None:
                raise NotFound("environment not found")
            return listing, membership.role, epoch
        epoch = await uow.environments.change_epoch()
        listing = await self.cache.get_or_compute(epoch, ("one", env_id), lambda: self._listing_now(uow, env_id))
        if listing is None:  # unknown or deleted
            raise NotFound("environment not found")
        membership = await authorize(uow, actor, listing.env.workspace_id, Role.VIEWER)  # NotFound outside the workspace
        if len(self._workspace_of) >= 100_000:
            self._workspace_of.clear()
        self._workspace_of[env_id] = listing.env.workspace_id
        return listing, membership.role, epoch

    async def _visible_listing_hot(
        self, actor: User, env_id: str, workspace_id: str
    ) -> tuple[EnvironmentListing, Role | None, int]:
        """``_visible_listing`` for an environment of a known workspace, through the gate:
        one statement when the answer is cached, a unit of work only to compute it."""
        role, epoch = await authorize_hot(self.gate, actor, workspace_id, Role.VIEWER)  # every request: never cached

        async def compute():
            async with self._reads() as uow:
                return await self._listing_now(uow, env_id)

        listing = await self.cache.get_or_compute(epoch, ("one", env_id), compute)
        if listing is None:
            raise NotFound("environment not found")
        return listing, role, epoch

    async def start(self, actor: User, env_id: str, *, gpu: bool = True) -> EnvironmentView:
        async def op(uow: UnitOfWork, env: Environment) -> None:
            env.check_can_start()
            if gpu and env.gpu_count:  # no storage_gib: its disk already counts while stopped
                await self.quotas.check(uow, env.workspace_id, Usage(gpus=env.gpu_count, cpu_cores=env.cpu_cores, memory_gib=env.memory_gib))
                if self.funds is not None:
                    await self.funds.check(env.workspace_id, gpu_model=env.gpu_model, gpu_count=env.gpu_count,
                                           cpu_cores=env.cpu_cores, memory_gib=env.memory_gib, disk_gib=env.disk_gib)
            env.with_gpu = gpu
            env.desired = Desired.RUNNING
            await self._place_or_queue(uow, env, "started by user" + ("" if gpu else " without GPUs"))

        return await self._operate(actor, env_id, op)

    async def stop(self, actor: User, env_id: str) -> EnvironmentView:
        async def op(uow: UnitOfWork, env: Environment) -> None:
            env.check_can_stop()
            await self.stop_env(uow, env, f"stopped by {actor.username}")

        return await self._operate(actor, env_id, op)

    async def restart(self, actor: User, env_id: str) -> EnvironmentView:
        async def op(uow: UnitOfWork, env: Environment) -> None:
            env.check_can_restart()
            env.generation += 1
            env.transition(EnvStatus.STARTING, f"restarted by {actor.username}", self.clock.now())

        return await self._operate(actor, env_id, op)

    async def delete(self, actor: User, env_id: str) -> EnvironmentView:
        async def op(uow: UnitOfWork, env: Environment) -> None:
            env.check_can_delete()
            await self.delete_env(uow, env, f"deleted by {actor.username}")

        return await self._operate(actor, env_id, op)

    async def delete_env(self, uow: UnitOfWork, env: Environment, reason: str) -> None:
        """Desired deleted; allocations released; the agent removes container and disk."""
        now = self.clock.now()
        env.desired = Desired.DELETED
        await uow.allocations.release(env.id)
        if env.host_id is None:
            # Never placed: nothing exists on any host.
            env.transition(EnvStatus.DELETED, reason, now)
        else:
            env.transition(EnvStatus.DELETING, reason, now)
            host = await uow.hosts.get(env.host_id)
            if host is None or host.status is HostStatus.OFFLINE:
                # No agent to ask: done now (a returning host's agent removes what is left).
                why = "its host was removed" if host is None else f"host {host.name} is offline"
                env.transition(EnvStatus.DELETED, f"{why}: nothing to wait for", now)

    async def events(self, actor: User, env_id: str, *, limit: int, offset: int) -> tuple[list[EnvironmentEvent], int]:
        workspace_id = self._workspace_of.get(env_id)
        if workspace_id is not None and self.gate is not None:
            _, _, epoch = await self._visible_listing_hot(actor, env_id, workspace_id)

            async def compute():
                async with self._reads() as uow:
                    return await uow.environments.events(env_id, limit=limit, offset=offset)

            return await self.cache.get_or_compute(epoch, ("events", env_id, limit, offset), compute)
        async with self._reads() as uow:
            _, _, epoch = await self._visible_listing(uow, actor, env_id)
            return await self.cache.get_or_compute(
                epoch, ("events", env_id, limit, offset), lambda: uow.environments.events(env_id, limit=limit, offset=offset)
            )

    @staticmethod
    async def _listing_now(uow: UnitOfWork, env_id: str) -> EnvironmentListing | None:
        listings, _ = await uow.environments.listings(env_id=env_id, limit=1, offset=0)
        return listings[0] if listings else None

    async def gpu_types(
        self, gpu_count: int = 1, cpu_cores: int = 2, memory_gib: int = 8
    ) -> tuple[list[ModelHeadroom], dict[str, int]]:
        """Per model over schedulable hosts: totals and whether ``gpu_count`` of it with
        ``cpu_cores``/``memory_gib`` starts now (queue and overcommit included), with
        each model's memory_mib."""
        return (await self.capacity(gpu_count, cpu_cores, memory_gib))[1:]

    async def capacity(
        self, gpu_count: int = 1, cpu_cores: int = 2, memory_gib: int = 8
    ) -> tuple[int | None, list[ModelHeadroom], dict[str, int]]:
        """``gpu_types`` with the change epoch it is the truth at (None: no epoch here).
        The answers are shared objects: the same epoch and request, the same object."""

        async def snapshot():
            # The fleet as a request created now would find it: the queue planned on it
            # once per epoch (the expensive part), whatever the request being composed.
            async with self._reads() as uow:
                hosts = await uow.hosts.list()
                fleet = await pl.fleet_snapshot(uow, hosts)
                queued = [
                    QueuedRequest(e.id, pl.request_of(e, pin=pl.must_pin(e)))
                    for e in await uow.environments.list_by_status([EnvStatus.QUEUED])
                ]
            return newcomer_view(fleet, queued, hosts), {g.model: g.memory_mib for h in hosts for g in h.gpus}

        if self.gate is not None:
            epoch = await self.gate.epoch()
        else:
            async with self._reads() as uow:
                epoch = await uow.environments.change_epoch()
        # Read after the epoch (the cache's rule): snapshot() opens its unit of work only now.
        view, memory = await self.cache.get_or_compute(epoch, ("fleet",), snapshot)

        async def headroom():
            return headroom_for(view, gpu_count, cpu_cores, memory_gib)

        return epoch, await self.cache.get_or_compute(epoch, ("headroom", gpu_count, cpu_cores, memory_gib), headroom), memory

    async def _refuse_never_fits(self, uow: UnitOfWork, req: CreateRequest) -> None:
        """409 ``never_fits`` for a request no host could hold even empty: it would wait forever."""
        request = PlacementRequest(
            gpu_count=req.gpu_count, gpu_model=req.gpu_model if req.gpu_count else None,
            cpu_cores=req.cpu_cores, memory_gib=req.memory_gib,
        )
        hosts = await uow.hosts.list()
        if ever_fits(hosts, request):
            return
        cpu, memory = largest_host(hosts, request.gpu_model, request.gpu_count)
        gpus = f" with {req.gpu_count} × {req.gpu_model or 'GPU'}" if req.gpu_count else ""
        if req.gpu_count and cpu == 0 and memory == 0:
            message = f"no host has {req.gpu_count} × {req.gpu_model or 'GPU'}: this request would wait forever"
        else:
            message = (
                f"no host could ever hold {req.cpu_cores} vCPU and {req.memory_gib} GiB{gpus}: "
                f"the largest such host offers {cpu} vCPU and {memory} GiB"
            )
        raise Conflict(message, code="never_fits", details={"max_cpu_cores": cpu, "max_memory_gib": memory})

    # --- shared steps (also used by the agent service and the sweeper) -------------------
    async def stop_env(self, uow: UnitOfWork, env: Environment, reason: str) -> None:
        """Desired stopped; its GPUs are released now. Its host ports stay held (users keep
        their ~/.ssh/config) and its container and disk stay on its host, until deleted."""
        now = self.clock.now()
        env.desired = Desired.STOPPED
        await pl.release_gpus(uow, env)
        if env.status is EnvStatus.QUEUED:
            env.transition(EnvStatus.STOPPED, reason, now)  # nothing runs yet: stopped at once
        else:
            env.transition(EnvStatus.STOPPING, reason, now)
        # The queue moves when this transaction commits (QueueingUnitOfWork).

    async def drain_queue(self, uow: UnitOfWork, known: dict[str, Environment] | None = None) -> list[str]:
        """Run a queue pass now, inside ``uow`` (see queue_pass.py). Rarely needed: every
        scheduling unit of work runs one when it commits."""
        return await QueuePass(self.clock, self.quotas)(uow, known)

    async def _place_or_queue(self, uow: UnitOfWork, env: Environment, reason: str) -> None:
        """Join the queue, then let the queue decide: FIFO with backfill, no jumping ahead."""
        now = self.clock.now()
        env.queued_at = now
        env.transition(EnvStatus.QUEUED, f"{reason}: waiting for capacity", now)
        await uow.environments.update(env)
        # Placed (or told what it waits for) when this transaction commits: QueueingUnitOfWork.

    async def _operate(self, actor: User, env_id: str, op) -> EnvironmentView:
        for attempt in range(RETRIES):
            try:
                async with self.uow() as uow:
                    await uow.lock_scheduling()
                    env = await load_operable(uow, actor, env_id)
                    await op(uow, env)
                    await uow.environments.update(env)
                    await uow.commit()
                break
            except Conflict as exc:
                if exc.code != "conflict" or attempt == RETRIES - 1:
                    raise
        return await self.get(actor, env_id) if env.status is not EnvStatus.DELETED else EnvironmentView(env, None, [], None)

    def _reads(self) -> UnitOfWork:
        return (self.reads or self.uow)()

    def _new(self, actor: User, req: CreateRequest) -> Environment:
        now = self.clock.now()
        env = Environment(
            id=new_id(), name=req.name.strip(), workspace_id=req.workspace_id, owner_id=actor.id,
            image=req.image or self.default_image, gpu_count=req.gpu_count, gpu_model=req.gpu_model,
            cpu_cores=req.cpu_cores, memory_gib=req.memory_gib, disk_gib=req.disk_gib, created_at=now, updated_at=now,
            env=dict(req.env), stop_after_minutes=req.stop_after_minutes, idle_stop_minutes=req.idle_stop_minutes,
            idle_gpu_threshold=req.idle_gpu_threshold, shared=req.shared, queued_at=now,
        )
        if req.secret_env:
            env.secret_env = seal_variables(self.secrets, env.id, req.secret_env)
        env.pending_events.append(EnvironmentEvent(new_id(), env.id, now, None, EnvStatus.QUEUED, "created"))
        return env
