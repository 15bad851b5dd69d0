"""The change epoch (migration 0023) and the hot reads cached on it stay exact.

Every committed change to what the environment list, detail, timeline and gpu-types
show moves the epoch in the same commit (memory, SQLite, PostgreSQL alike), a rolled
back one does not, and the cached answers follow at once: a read after a commit never
gets the answer from before it. On PostgreSQL, what heartbeats rewrite unchanged every
few seconds (same statuses, same GPU inventory, a new heartbeat time) moves nothing, so
the cache survives a busy fleet; every other column of the tables it covers does.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from remotegpu.adapters.db.hot_reads import hot_reads_for
from remotegpu.adapters.db.tables import environments, hosts
from remotegpu.application.environments.service import EnvironmentService
from remotegpu.application.workspaces.service import WorkspaceService
from remotegpu.domain.workspaces.quota import Quota
from remotegpu.domain.environments.models import EnvStatus, GpuAllocation, HostPort
from remotegpu.domain.shared.errors import NotFound
from tests.contract.test_environment_listings import add_user, add_workspaces
from tests.contract.test_fleet_environment_repositories import OWNER, WS1, add_envs, add_hosts, at, make_env, make_host


class _Clock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


async def epoch(uow_factory) -> int | None:
    async with uow_factory() as uow:
        return await uow.environments.change_epoch()


async def test_every_commit_that_changes_what_reads_show_moves_the_epoch(uow_factory):
    start = await epoch(uow_factory)
    assert start is not None
    host = make_host(1, gpus=2)
    await add_hosts(uow_factory, host)
    assert await epoch(uow_factory) > start

    steps = []

    async def commit(change) -> None:
        before = await epoch(uow_factory)
        async with uow_factory() as uow:
            await change(uow)
            assert await epoch(uow_factory) == before  # not before the commit (another unit of work reads)
            await uow.commit()
        steps.append(await epoch(uow_factory) > before)

    env = make_env(1, status=EnvStatus.RUNNING, host_id=host.id)
    await commit(lambda uow: uow.environments.add(env))
    await commit(lambda uow: uow.allocations.add_gpus([GpuAllocation(env.id, host.id, host.gpus[0].uuid)]))
    await commit(lambda uow: uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", env.id)]))
    await commit(lambda uow: uow.environments.update(replace(env, name="renamed")))
    await commit(lambda uow: uow.environments.update(replace(env, name="renamed", status=EnvStatus.STOPPED)))
    await commit(lambda uow: uow.hosts.update(replace(host, status=host.status.__class__("cordoned"))))
    await commit(lambda uow: uow.hosts.update(replace(host, gpus=host.gpus[:1])))
    await commit(lambda uow: uow.allocations.release(env.id))
    assert steps == [True] * len(steps)

    # Rolled back: nothing moves.
    before = await epoch(uow_factory)
    async with uow_factory() as uow:
        await uow.environments.update(replace(env, name="never"))
        await uow.rollback()
    assert await epoch(uow_factory) == before


@pytest.fixture(params=["unit-of-work", "hot-reads"])
async def gate(request, uow_factory, repo_backend):
    """How the service reads the membership and the epoch: in its unit of work, or in
    one statement straight on the driver (adapters/db/hot_reads.py, as the server does)."""
    if request.param == "unit-of-work":
        yield None
        return
    name, pg = repo_backend
    if name == "memory":
        pytest.skip("the memory store has no second way in")
    engine = uow_factory()._session_factory.kw["bind"]
    hot = hot_reads_for(engine, **({"server_settings": {"search_path": pg[1]}} if pg else {}))
    yield hot
    await hot.close()


async def test_a_read_after_a_commit_never_gets_the_cached_answer_from_before(uow_factory, gate):
    viewer = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000bb", "viewer")
    await add_user(uow_factory, OWNER, "owner")
    await add_workspaces(uow_factory, viewer.id, WS1)
    host = make_host(1, gpus=2)
    await add_hosts(uow_factory, host)
    env = make_env(1, status=EnvStatus.RUNNING, host_id=host.id, gpu_model=host.gpus[0].model)
    queued = make_env(2, status=EnvStatus.QUEUED, queued_at=at(2), gpu_count=2, gpu_model=host.gpus[0].model)
    await add_envs(uow_factory, env, queued)
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(env.id, host.id, host.gpus[0].uuid)])
        await uow.commit()
    service = EnvironmentService(uow=uow_factory, clock=_Clock(), gate=gate)

    async def seen():
        views, total = await service.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
        detail = await service.get(viewer, env.id)
        events, _ = await service.events(viewer, env.id, limit=50, offset=0)
        types, _ = await service.gpu_types(1, 1, 1)
        return views, total, detail, events, types

    views, total, detail, events, types = await seen()
    assert await seen() == (views, total, detail, events, types)  # cached, and the same
    assert [v.env.name for v in views] == ["env-2", "env-1"] and detail.gpus and types[0].free == 1
    assert [v.queue_position for v in views] == [1, None]

    # A rename, a status change with an event, GPUs released: all seen at once.
    async with uow_factory() as uow:
        changed = await uow.environments.get(env.id)
        changed.name = "renamed"
        changed.transition(EnvStatus.STOPPING, "stopped by test", at(5))
        await uow.environments.update(changed)
        await uow.allocations.release(env.id)
        await uow.commit()
    views, total, detail, events, types = await seen()
    assert [v.env.name for v in views] == ["env-2", "renamed"] and detail.env.status is EnvStatus.STOPPING
    assert detail.gpus == [] and events[-1].reason == "stopped by test" and types[0].free == 2
    assert types[0].startable_now is False  # the queued one (2 GPUs) comes first and takes both

    # The queue moves (position gone), a host's name changes: seen.
    async with uow_factory() as uow:
        q = await uow.environments.get(queued.id)
        q.transition(EnvStatus.STOPPED, "stopped", at(6))
        await uow.environments.update(q)
        await uow.hosts.update(replace(host, name="renamed-host"))
        await uow.commit()
    views, _, detail, _, types = await seen()
    assert views[0].queue_position is None and detail.host_name == "renamed-host" and types[0].startable_now is True

    # Membership ends: the next read is refused (authorization is never cached).
    async with uow_factory() as uow:
        await uow.workspaces.remove_member(WS1, viewer.id)
        await uow.commit()
    with pytest.raises(NotFound):
        await service.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
    with pytest.raises(NotFound):
        await service.get(viewer, env.id)
    with pytest.raises(NotFound):
        await service.events(viewer, env.id, limit=50, offset=0)
    assert await service.list(viewer, workspace_id=None, statuses=None, limit=50, offset=0) == ([], 0)


# Only where hot reads exist (the unit of work has no batching; the memory store no second way in).
@pytest.mark.parametrize("repo_backend", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("gate", ["hot-reads"], indirect=True)
async def test_hot_reads_asked_at_once_share_a_statement_and_each_gets_its_own_answer(uow_factory, gate):
    """Checks asked in one turn of the event loop go as one statement (PostgreSQL): each
    caller still gets its own workspace's and role's answer, and a check asked after a
    commit sees it."""
    import asyncio

    member = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000bb", "member")
    await add_user(uow_factory, OWNER, "owner")
    await add_workspaces(uow_factory, member.id, WS1)
    before = getattr(gate, "statements", None)
    asks = [gate.membership(WS1, member.id), gate.membership(WS1, OWNER), gate.membership("no-such-ws", member.id),
            gate.epoch()] * 10
    answers = await asyncio.gather(*asks)
    epochs = {a if isinstance(a, int) else a[0] for a in answers}
    assert len(epochs) == 1  # one snapshot
    for n in range(0, len(answers), 4):
        mine, owners, none, _ = answers[n : n + 4]
        assert mine[1:] == (True, "viewer") and owners[1:] == (True, None) and none[1:] == (False, None)
    if before is not None:
        assert gate.statements - before < len(asks) // 2, "checks asked together were not batched"
    async with uow_factory() as uow:
        await uow.workspaces.remove_member(WS1, member.id)
        await uow.commit()
    after = await asyncio.gather(gate.membership(WS1, member.id), gate.epoch())
    assert after[0][1:] == (True, None) and after[0][0] > epochs.pop() and after[1] == after[0][0]


async def test_the_workspace_list_and_quota_follow_renames_memberships_and_quotas_at_once(uow_factory, gate):
    """Workspaces' own rows (a rename) move the epoch too (migration 0030), memberships
    and quotas already did (0023): the cached list and quota are never older than a commit."""
    user = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000bb", "viewer")
    await add_user(uow_factory, OWNER, "owner")
    await add_workspaces(uow_factory, user.id, WS1)
    service = WorkspaceService(uow=uow_factory, clock=_Clock(), gate=gate)
    views, total = await service.list_mine(user, limit=50, offset=0)
    assert [v.workspace.name for v in views] == ["ws0"] and total == 1
    assert await service.list_mine(user, limit=50, offset=0) == (views, total)
    assert (await service.get_quota(user, WS1)).is_default

    async with uow_factory() as uow:
        ws = await uow.workspaces.get(WS1)
        ws.name = "renamed"
        await uow.workspaces.update(ws)
        await uow.commit()
    assert [v.workspace.name for v in (await service.list_mine(user, limit=50, offset=0))[0]] == ["renamed"]
    async with uow_factory() as uow:
        await uow.workspaces.set_quota(WS1, Quota(max_gpus=3))
        await uow.commit()
    assert (await service.get_quota(user, WS1)).quota.max_gpus == 3

    async with uow_factory() as uow:
        await uow.workspaces.remove_member(WS1, user.id)
        await uow.commit()
    assert await service.list_mine(user, limit=50, offset=0) == ([], 0)
    with pytest.raises(NotFound):
        await service.get_quota(user, WS1)


# --- PostgreSQL: what heartbeats rewrite unchanged moves nothing; everything else does ------------------


# The column-precise triggers are PostgreSQL's (SQLite: every write moves the epoch).
pg_only = pytest.mark.parametrize("repo_backend", ["postgres"], indirect=True)


_VOLATILE = {"environments": {"updated_at", "last_activity_at", "idle_since"}, "hosts": {"last_heartbeat_at", "gpu_utilization"}}


def _other_value(column, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, datetime):
        return value + timedelta(seconds=7)
    if isinstance(value, dict):
        return {**value, "x": "1"}
    if isinstance(value, list):
        return [*value, "x"]
    if value is None:
        type_name = type(column.type).__name__
        if "DateTime" in type_name:
            return at(9)
        if "Integer" in type_name:
            return 3
        if "JSON" in type_name:
            return {"x": "1"}
        return "x"
    if column.name == "status":
        return "stopped" if column.table.name == "environments" else "cordoned"
    return value + "x" if len(value) < 30 else value[:-1] + "y"


@pg_only
async def test_each_shown_column_moves_the_epoch_and_heartbeat_columns_do_not(uow_factory):
    host = make_host(1, gpus=2)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, make_env(1, host_id=host.id, started_at=at(1)))
    for table, key in ((environments, make_env(1).id), (hosts, host.id)):
        for column in table.c:
            if column.primary_key or column.foreign_keys:
                continue
            async with uow_factory() as uow:
                session = uow.environments._session
                value = (await session.execute(table.select().where(table.c.id == key))).first()._mapping[column.name]
                before = await uow.environments.change_epoch()
                await session.execute(table.update().where(table.c.id == key).values({column.name: _other_value(column, value)}))
                await uow.commit()
            moved = await epoch(uow_factory) > before
            expected = column.name not in _VOLATILE[table.name] or (column.name == "last_heartbeat_at" and value is None)
            assert moved is expected, f"{table.name}.{column.name}"


@pg_only
async def test_a_heartbeat_rewriting_the_same_host_and_environments_moves_nothing(uow_factory):
    host = make_host(1, gpus=4, last_heartbeat_at=at(0))
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, make_env(1, host_id=host.id, status=EnvStatus.RUNNING))
    before = await epoch(uow_factory)
    async with uow_factory() as uow:  # what AgentService._heartbeat writes when nothing changed
        await uow.lock_scheduling()
        same = await uow.hosts.get_by_agent_token(host.agent_token_hash) if host.agent_token_hash else await uow.hosts.get(host.id)
        same.last_heartbeat_at = at(1)
        same.gpu_utilization = {g.uuid: 42 for g in same.gpus}
        await uow.hosts.update(same)
        for env in await uow.environments.list_for_host(host.id):
            env.last_activity_at = at(1)
            await uow.environments.update(env)
        await uow.commit()
    assert await epoch(uow_factory) == before
    async with uow_factory() as uow:
        assert (await uow.hosts.get(host.id)).gpus == host.gpus  # the inventory is still there


@pg_only
async def test_the_epoch_row_is_the_last_lock_a_transaction_takes(uow_factory):
    """Deferred to commit: two transactions updating rows in opposite orders do not
    deadlock on the counter (each takes it only when committing)."""
    async with uow_factory() as uow:
        session = uow.environments._session
        row = (await session.execute(text(
            "SELECT tgdeferrable, tginitdeferred FROM pg_trigger "
            "WHERE tgname = 'change_epoch_environments_update' AND tgrelid = 'environments'::regclass"
        ))).one()
    assert tuple(row) == (True, True)



async def test_the_quota_and_its_usage_are_never_older_than_the_last_commit(uow_factory):
    from remotegpu.application.workspaces.service import WorkspaceService
    from remotegpu.domain.workspaces.quota import Quota

    viewer = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000bb", "viewer")
    await add_user(uow_factory, OWNER, "owner")
    await add_workspaces(uow_factory, viewer.id, WS1)
    service = WorkspaceService(uow=uow_factory, clock=_Clock())
    first = await service.get_quota(viewer, WS1)
    assert await service.get_quota(viewer, WS1) == first and first.usage.environments == 0 and first.is_default

    await add_envs(uow_factory, make_env(1, status=EnvStatus.STOPPED, disk_gib=30))
    assert (await service.get_quota(viewer, WS1)).usage.storage_gib == 30
    async with uow_factory() as uow:
        await uow.workspaces.set_quota(WS1, Quota(max_gpus=3))
        await uow.commit()
    view = await service.get_quota(viewer, WS1)
    assert view.quota.max_gpus == 3 and not view.is_default
    async with uow_factory() as uow:
        await uow.workspaces.remove_member(WS1, viewer.id)
        await uow.commit()
    with pytest.raises(NotFound):
        await service.get_quota(viewer, WS1)
