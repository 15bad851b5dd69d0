"""The queue moves whenever capacity frees: one queue pass at the end of every
scheduling transaction.

Capacity frees in many places: a delete or stop, a host coming back or being
uncordoned, a quota raised, an environment the agent reports failed, a host's
overcommit raised. Calling the queue from each of them was tried and went wrong: a
call placed before the use case saved its own change planned on stale state (a
deleted environment still counted as running) and the queue stalled until some
unrelated event. So nobody calls it any more. Every use case that can change
capacity already takes ``uow.lock_scheduling()``; ``QueueingUnitOfWork`` remembers
that it did and, when the use case commits, first runs ``QueuePass`` in the same
transaction, after every write of the use case. The placements it makes commit
atomically with the release that allowed them: there is no moment at which a
committed state has a queued environment that the queue's rule would start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from remotegpu.application.environments import placement as pl
from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.domain.environments.models import Environment, EnvStatus
from remotegpu.domain.scheduling import FleetState, QueuedRequest, place, plan_queue
from remotegpu.domain.scheduling.headroom import describe_wait
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.workspaces.quota import Usage


def _usage(env: Environment) -> Usage:
    return Usage(gpus=env.gpus_wanted, cpu_cores=env.cpu_cores, memory_gib=env.memory_gib)


@dataclass
class QueuePass:
    """Start the queued environments that fit now: FIFO with conservative backfill
    (``domain.scheduling.queue``), and each within its workspace's quota."""

    clock: Clock
    quotas: WorkspacePolicy = field(default_factory=WorkspacePolicy)
    # Plans' reserved GPUs (application/billing/plans.py: Reservations); None: no plans.
    reservations: Any = None
    # Which hosts have which images (issue 15): ``await locality(references)`` → reference →
    # host ids. Placement prefers, all else equal, a host that has the environment's image
    # (no pull). None: no preference.
    locality: Callable[[set[str]], Awaitable[dict[str, frozenset[str]]]] | None = None

    async def __call__(self, uow: UnitOfWork, known: dict[str, Environment] | None = None) -> list[str]:
        """Run one pass; return the ids started. ``known``: instances the caller holds
        and will save again (updated in place so its copy does not undo the pass)."""
        queued = [(known or {}).get(e.id, e) for e in await uow.environments.list_by_status([EnvStatus.QUEUED])]
        if not queued:
            return []
        hosts = await uow.hosts.list()
        by_id = {h.id: h for h in hosts}
        fleet = await pl.fleet_snapshot(uow, hosts)
        started: list[str] = []
        having: dict[str, frozenset[str]] = {}
        if self.locality is not None and len(hosts) > 1:
            try:
                having = await self.locality({e.image for e in queued if not pl.must_pin(e)})
            except Exception:  # noqa: BLE001 - a preference only: placement goes on without it
                having = {}

        def request_of(env: Environment):
            return pl.request_of(env, pin=pl.must_pin(env), prefer_hosts=having.get(env.image, frozenset()))

        # Most passes (a heartbeat of a full fleet) can start nothing: when no queued
        # request fits any host even ignoring the queue's order, skip the quota reads.
        fitting = [i for i, e in enumerate(queued) if place(fleet, request_of(e)) is not None]
        if not fitting:
            await self._explain_waits(uow, fleet, queued, {})
            return []
        # A workspace at its quota must neither start nor hold capacity for the others.
        # Those over quota now are dropped up front (usage only grows during a pass, so
        # they cannot come back in it; only those up to the last that fits matter);
        # then plan, and when the plan starts one that the starts before it pushed over
        # quota, drop it and plan again (each round drops one; usually one round).
        blocked = await self._over_quota(uow, queued[: fitting[-1] + 1])
        if self.reservations is not None:  # what other workspaces' plans hold back neither starts nor holds a slot
            for env in queued[: fitting[-1] + 1]:
                if env.id not in blocked and not await self.reservations.allows(uow, env, fleet):
                    blocked[env.id] = _RESERVED
        while True:
            waiting = [e for e in queued if e.id not in blocked and e.id not in started]
            plan = plan_queue(fleet.copy(), [QueuedRequest(e.id, request_of(e)) for e in waiting])
            envs = {e.id: e for e in waiting}
            replan = False
            for env_id, placement in plan.started:
                env = envs[env_id]
                if not await self.quotas.fits(uow, env.workspace_id, _usage(env)):
                    blocked[env_id] = _QUOTA
                    replan = True
                    break
                if self.reservations is not None and not await self.reservations.allows(uow, env, fleet):
                    blocked[env_id] = _RESERVED
                    replan = True
                    break
                try:
                    await pl.allocate(uow, env, placement, by_id[placement.host_id])
                except Conflict as exc:
                    if exc.code != "no_free_ports":
                        raise
                    # That host is out of ports: this one waits (nothing was written) and
                    # the pass goes on, so an unrelated use case committing it never fails.
                    blocked[env_id] = f"waiting: {exc.message}"
                    replan = True
                    break
                fleet.allocate(placement.allocation(request_of(env)))
                env.transition(EnvStatus.STARTING, "capacity freed up: placed on a host", self.clock.now())
                await uow.environments.update(env)
                started.append(env_id)
            if not replan:
                break
        await self._explain_waits(uow, fleet, [e for e in queued if e.id not in started], blocked)
        return started

    async def _over_quota(self, uow: UnitOfWork, queued: list[Environment]) -> dict[str, str]:
        verdicts: dict[tuple, bool] = {}  # queues repeat a few (workspace, shape) pairs
        blocked = {}
        for env in queued:
            key = (env.workspace_id, env.gpus_wanted, env.cpu_cores, env.memory_gib)
            if key not in verdicts:
                verdicts[key] = await self.quotas.fits(uow, env.workspace_id, _usage(env))
            if not verdicts[key]:
                blocked[env.id] = _QUOTA
        return blocked

    async def _explain_waits(self, uow: UnitOfWork, fleet: FleetState, waiting: list[Environment], blocked: dict[str, str]) -> None:
        """Say what each waiting environment waits for (shown as its status message)."""
        by_shape: dict[object, str] = {}  # queues repeat a few shapes
        for env in waiting:
            if env.id in blocked:
                why = blocked[env.id]
            else:
                request = pl.request_of(env, pin=pl.must_pin(env))
                shape = (request.gpu_count, request.gpu_model, request.cpu_cores, request.memory_gib, request.pin_host_id)
                if shape not in by_shape:
                    by_shape[shape] = describe_wait(fleet, request)
                why = by_shape[shape]
            message = _with_reason(env.status_message, why)
            if message != env.status_message:
                env.status_message = message
                await uow.environments.update(env)


_SEPARATOR = ": waiting for "
_QUOTA = "waiting for its workspace's quota to allow it"
_RESERVED = "waiting for GPUs: the free ones are reserved by other workspaces' plans"


def _with_reason(message: str | None, why: str) -> str:
    """Keep what queued it ("created", "started by user") and replace what it waits for."""
    head = (message or "queued").split(_SEPARATOR, 1)[0].split(": waiting", 1)[0]
    return f"{head}: {why}"


class QueueingUnitOfWork:
    """A unit of work that ends every scheduling transaction with a queue pass.

    ``lock_scheduling()`` marks the transaction as one that may change capacity;
    ``commit()`` then runs the pass (in this transaction, after the use case's writes)
    before committing. Everything else is the wrapped unit of work's own.
    """

    def __init__(self, inner: UnitOfWork, queue: QueuePass):
        self._inner = inner
        self._queue = queue
        self._scheduling = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "QueueingUnitOfWork":
        await self._inner.__aenter__()
        self._scheduling = False
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._scheduling = False
        await self._inner.__aexit__(*exc)

    async def lock_scheduling(self) -> None:
        await self._inner.lock_scheduling()
        self._scheduling = True

    async def commit(self) -> None:
        if self._scheduling:
            await self._queue(self)
        await self._inner.commit()

    async def rollback(self) -> None:
        await self._inner.rollback()
