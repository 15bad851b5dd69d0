"""The hot reads. ``EnvironmentRepository.listings`` gives each environment
of a page with its queue position, host name, GPUs and ports — memory, SQLite and
PostgreSQL alike — and the environment list costs a bounded number of SQL statements
whatever its length (it once cost five per environment: 17 req/s with 50 of them).
``HostRepository.gpu_types`` counts in one query what the scheduler's fleet snapshot counts.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, text

from remotegpu.adapters.db.engine import create_engine, create_session_factory
from remotegpu.adapters.db.migrate import upgrade
from remotegpu.adapters.db.tables import metadata
from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.application.environments import placement as pl
from remotegpu.application.environments.autostop import AutoStop
from remotegpu.application.environments.service import EnvironmentService
from remotegpu.application.workspaces.service import WorkspaceService
from remotegpu.domain.environments.models import EnvironmentEvent, EnvStatus, GpuAllocation, HostPort
from remotegpu.domain.fleet.models import HostStatus, parse_fake_gpus
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import NotFound
from remotegpu.domain.workspaces.models import Membership, Role, Workspace
from remotegpu.entrypoints.containers import _read_session_factory
from tests.contract.conftest import _pg_engine
from tests.contract.test_fleet_environment_repositories import OWNER, WS1, WS2, add_envs, add_hosts, at, make_env, make_host

ids = lambda listings: [int(item.env.id[-3:]) for item in listings]  # noqa: E731


async def add_workspaces(uow_factory, member: str, *workspace_ids: str) -> None:
    async with uow_factory() as uow:
        for n, ws in enumerate(workspace_ids):
            await uow.workspaces.add(Workspace(ws, f"ws{n}", f"ws{n}-{ws[-4:]}", False, OWNER, at(n)))
            await uow.workspaces.add_member(Membership(ws, member, Role.VIEWER, at(n)))
        await uow.commit()


async def add_user(uow_factory, user_id: str, name: str) -> User:
    user = User(id=user_id, username=name, email=f"{name}@example.com", password_hash="x", created_at=at(0))
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def test_listings_carry_position_host_gpus_and_ports(uow_factory):
    one, two = make_host(1, gpus=4), make_host(2, gpus=2)
    await add_hosts(uow_factory, one, two)
    await add_envs(
        uow_factory,
        make_env(1, status=EnvStatus.RUNNING, host_id=one.id),
        make_env(2, status=EnvStatus.QUEUED, queued_at=at(30)),
        make_env(3, status=EnvStatus.QUEUED, queued_at=at(10), workspace_id=WS2),  # first in the queue, other workspace
        make_env(4, status=EnvStatus.DELETED, host_id=one.id),
        make_env(5, status=EnvStatus.STOPPED, host_id=two.id),  # its disk is there, it holds nothing
        make_env(6, status=EnvStatus.QUEUED, queued_at=at(20)),
        make_env(7, status=EnvStatus.STARTING, host_id=two.id),
    )
    g1, g2 = [g.uuid for g in one.gpus], [g.uuid for g in two.gpus]
    e = lambda n: make_env(n).id  # noqa: E731
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(e(1), one.id, g1[3]), GpuAllocation(e(1), one.id, g1[1])])
        await uow.allocations.add_gpus([GpuAllocation(e(7), two.id, g2[0])])
        await uow.allocations.add_ports([HostPort(one.id, 40100, "jupyter", e(1)), HostPort(one.id, 40022, "ssh", e(1))])
        await uow.allocations.add_ports([HostPort(two.id, 40022, "ssh", e(7))])
        await uow.commit()

    async with uow_factory() as uow:
        found, total = await uow.environments.listings(workspace_id=WS1, limit=10, offset=0)
        assert ids(found) == [7, 6, 5, 2, 1] and total == 5
        by_id = {int(item.env.id[-3:]): item for item in found}
        assert [by_id[n].queue_position for n in (7, 6, 5, 2, 1)] == [None, 2, None, 3, None]  # env 3 (WS2) is first
        assert by_id[1].host_name == "gpu-01" and by_id[7].host_name == "gpu-02" and by_id[6].host_name is None
        assert [g.uuid for g in by_id[1].gpus] == [g1[1], g1[3]]  # by index
        assert by_id[1].gpus[0] == one.gpus[1]
        assert [g.uuid for g in by_id[7].gpus] == [g2[0]] and by_id[5].gpus == [] and by_id[5].host_name == "gpu-02"
        assert by_id[1].ports == [HostPort(one.id, 40022, "ssh", e(1)), HostPort(one.id, 40100, "jupyter", e(1))]
        assert by_id[5].ports == [] and by_id[2].ports == []
        assert by_id[1].env == make_env(1, status=EnvStatus.RUNNING, host_id=one.id)

        page, total = await uow.environments.listings(workspace_id=WS1, limit=2, offset=1)
        assert ids(page) == [6, 5] and total == 5
        assert await uow.environments.listings(workspace_id=WS1, limit=2, offset=10) == ([], 5)  # past the end
        assert await uow.environments.listings(workspace_id="nowhere", limit=2, offset=0) == ([], 0)
        queued, total = await uow.environments.listings(statuses=[EnvStatus.QUEUED], limit=10, offset=0)
        assert ids(queued) == [6, 3, 2] and [q.queue_position for q in queued] == [2, 1, 3] and total == 3
        single, total = await uow.environments.listings(env_id=e(7), limit=1, offset=0)
        assert ids(single) == [7] and total == 1
        assert await uow.environments.listings(env_id=e(4), limit=1, offset=0) == ([], 0)  # deleted: gone


async def test_listings_of_a_members_workspaces(uow_factory):
    member = "00000000-0000-0000-0000-0000000000aa"
    await add_user(uow_factory, OWNER, "owner")
    await add_user(uow_factory, member, "member")
    await add_workspaces(uow_factory, member, WS2)  # a member of WS2 only
    await add_envs(uow_factory, make_env(1), make_env(2, workspace_id=WS2), make_env(3, workspace_id=WS2))
    async with uow_factory() as uow:
        found, total = await uow.environments.listings(member_id=member, limit=10, offset=0)
        assert ids(found) == [3, 2] and total == 2
        assert await uow.environments.listings(member_id="stranger", limit=10, offset=0) == ([], 0)


# --- the number of statements, on SQLite --------------------------------------------------------


@pytest.fixture
async def counted(tmp_path):
    """(unit-of-work factory, list of SQL statements run, the engine) over a migrated SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'count.db'}"
    await asyncio.to_thread(upgrade, url)  # the sync entry point, from a thread (as start-up does)
    engine = create_engine(url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    sessions = create_session_factory(engine)
    yield (lambda: SqlUnitOfWork(sessions)), statements, engine.sync_engine
    await engine.dispose()


class _Clock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


async def _seed_page(uow_factory, n: int) -> User:
    """``n`` environments in WS1, all placed on one host with a GPU and two ports each,
    every third one queued instead."""
    viewer = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000bb", "viewer")
    await add_user(uow_factory, OWNER, "owner")
    await add_workspaces(uow_factory, viewer.id, WS1)
    host = make_host(1, gpus=n)
    await add_hosts(uow_factory, host)
    envs = [
        make_env(i, status=EnvStatus.QUEUED, queued_at=at(i)) if i % 3 == 0
        else make_env(i, status=EnvStatus.RUNNING, host_id=host.id)
        for i in range(1, n + 1)
    ]
    for env in envs:
        env.pending_events.append(EnvironmentEvent("4" + env.id[1:], env.id, at(0), None, EnvStatus.QUEUED, "created"))
    await add_envs(uow_factory, *envs)
    async with uow_factory() as uow:
        for i, env in enumerate(envs):
            if env.host_id:
                await uow.allocations.add_gpus([GpuAllocation(env.id, host.id, host.gpus[i].uuid)])
                await uow.allocations.add_ports([HostPort(host.id, 41000 + 2 * i, "ssh", env.id),
                                                 HostPort(host.id, 41001 + 2 * i, "jupyter", env.id)])
        await uow.commit()
    return viewer


@pytest.mark.parametrize("n", [3, 50])
async def test_the_environment_list_costs_a_bounded_number_of_statements(counted, n):
    uow_factory, statements, _ = counted
    viewer = await _seed_page(uow_factory, n)
    service = EnvironmentService(uow=uow_factory, clock=_Clock())

    statements.clear()
    views, total = await service.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
    assert total == n and len(views) == min(n, 50)
    assert len(statements) <= 4, statements  # authorize (with the change epoch), the page, its GPUs, its ports
    assert all(v.host_name == "gpu-01" and len(v.gpus) == 1 and len(v.ports) == 2 for v in views if v.env.host_id)
    assert sorted(v.queue_position for v in views if v.env.status is EnvStatus.QUEUED) == list(range(1, n // 3 + 1))
    statements.clear()
    assert await service.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0) == (views, total)
    assert len(statements) == 1, statements  # nothing changed since: authorize (never cached), with the epoch

    statements.clear()
    views, total = await service.list(viewer, workspace_id=None, statuses=None, limit=50, offset=0)
    # The member's workspaces are a subquery; one role lookup per workspace on the page (here
    # one) says whether plain variable values are shown (access.may_operate).
    assert total == n and len(statements) <= 5, statements

    statements.clear()
    detail = await service.get(viewer, views[0].env.id)
    assert detail == views[0] and len(statements) <= 5, statements
    statements.clear()
    assert await service.get(viewer, views[0].env.id) == detail and len(statements) == 1, statements  # authorize+epoch

    statements.clear()
    events, total = await service.events(viewer, views[0].env.id, limit=50, offset=0)
    assert total == 1 and len(events) == 1 and len(statements) <= 2, statements  # authorize with the epoch, the events
    statements.clear()
    assert await service.events(viewer, views[0].env.id, limit=50, offset=0) == (events, total)
    assert len(statements) == 1, statements

    statements.clear()
    workspaces, total = await WorkspaceService(uow=uow_factory, clock=_Clock()).list_mine(viewer, limit=50, offset=0)
    assert total == 1 and len(statements) == 1, statements


async def test_outside_the_workspace_the_list_and_detail_do_not_exist(counted):
    uow_factory, _, _ = counted
    viewer = await _seed_page(uow_factory, 3)
    stranger = await add_user(uow_factory, "00000000-0000-0000-0000-0000000000cc", "stranger")
    service = EnvironmentService(uow=uow_factory, clock=_Clock())
    with pytest.raises(NotFound):
        await service.list(stranger, workspace_id=WS1, statuses=None, limit=50, offset=0)
    assert await service.list(stranger, workspace_id=None, statuses=None, limit=50, offset=0) == ([], 0)
    views, _ = await service.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
    with pytest.raises(NotFound):
        await service.get(stranger, views[0].env.id)
    with pytest.raises(NotFound):
        await service.get(viewer, "no-such-environment")


# --- GPU types: one aggregate query, the scheduler's counts --------------------------------------


async def _reference_gpu_types(uow) -> dict[str, tuple[int, int, int]]:
    """What the scheduler's own FleetState says (how gpu-types was computed before)."""
    hosts = await uow.hosts.list()
    fleet = await pl.fleet_snapshot(uow, hosts)
    memory = {g.model: g.memory_mib for h in hosts for g in h.gpus}
    return {m: (t, f, memory[m]) for m, (t, f) in fleet.gpu_counts().items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_gpu_types_count_what_the_scheduler_counts(uow_factory, seed):
    rng = random.Random(seed)
    fleet = []
    for n in range(1, 9):
        model = rng.choice(["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA L4"])
        gpus = [replace(g, healthy=rng.random() > 0.15) for g in parse_fake_gpus(f"{rng.randint(1, 4)}x{model}", seed=f"{seed}-{n}")]
        status = rng.choice([HostStatus.READY, HostStatus.READY, HostStatus.CORDONED, HostStatus.OFFLINE, HostStatus.DRAINING])
        status = HostStatus.READY if n <= 2 else status  # something to count
        fleet.append(make_host(n, gpus=gpus, status=status))
    await add_hosts(uow_factory, *fleet)
    envs, allocations = [], []
    for n in range(1, 30):
        host = rng.choice(fleet)
        status = rng.choice([EnvStatus.RUNNING, EnvStatus.STARTING, EnvStatus.LOST, EnvStatus.STOPPING, EnvStatus.QUEUED])
        env = make_env(n, status=status, host_id=None if status is EnvStatus.QUEUED else host.id)
        envs.append(env)
        free = [g for g in host.gpus if g.uuid not in {a.gpu_uuid for a in allocations}]
        if env.host_id and free:  # a stopping one's rows would be released already: not counted either way
            allocations += [GpuAllocation(env.id, host.id, g.uuid) for g in rng.sample(free, rng.randint(1, len(free)))]
    await add_envs(uow_factory, *envs)
    async with uow_factory() as uow:
        await uow.allocations.add_gpus(allocations)
        await uow.commit()
    async with uow_factory() as uow:
        expected = await _reference_gpu_types(uow)
        assert await uow.hosts.gpu_types() == expected
        assert expected  # the seeds give a fleet with something schedulable


# --- reads on PostgreSQL: no BEGIN, no ROLLBACK -------------------------------------------------


async def test_read_units_of_work_on_postgresql_run_without_a_transaction(repo_pg_schema):
    """The read-only use cases' sessions (entrypoints/containers.py) skip BEGIN/ROLLBACK:
    each statement is its own transaction (its own transaction id) within one session."""
    url, schema = repo_pg_schema
    engine = _pg_engine(url, schema)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
        writes, reads = create_session_factory(engine), _read_session_factory(engine)

        async def one_transaction(sessions) -> bool:
            async with sessions() as session:
                first = (await session.execute(text("SELECT txid_current()"))).scalar()
                return (await session.execute(text("SELECT txid_current()"))).scalar() == first

        assert await one_transaction(reads) is False
        assert await one_transaction(writes) is True  # the use cases that write keep their transaction

        viewer = await _seed_page(lambda: SqlUnitOfWork(writes), 6)
        plain = EnvironmentService(uow=lambda: SqlUnitOfWork(writes), clock=_Clock())
        fast = EnvironmentService(uow=lambda: SqlUnitOfWork(writes), clock=_Clock(), reads=lambda: SqlUnitOfWork(reads))
        listed = await fast.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
        assert listed == await plain.list(viewer, workspace_id=WS1, statuses=None, limit=50, offset=0)
        assert listed[1] == 6 and await fast.get(viewer, listed[0][0].env.id) == listed[0][0]
        assert await fast.gpu_types() == await plain.gpu_types()
    finally:
        await engine.dispose()


# --- the auto-stop sweep (every 2 s) writes only what it changes -----------------------------------


async def test_a_sweep_with_nothing_to_stop_writes_nothing(counted):
    """It once re-saved every running environment on every sweep: with 1,200 of them a
    third of a core, all the time, under the scheduling lock."""
    uow_factory, statements, engine = counted
    viewer = await _seed_page(uow_factory, 12)  # 8 running, none with a limit
    service = EnvironmentService(uow=uow_factory, clock=_Clock())
    sweeper = AutoStop(uow=uow_factory, clock=_Clock(), environments=service)
    statements.clear()
    assert await sweeper.sweep() == []
    assert not [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))], statements

    # One past its time limit: that one is stopped (and saved), the others still are not.
    views, _ = await service.list(viewer, workspace_id=WS1, statuses=[EnvStatus.RUNNING], limit=50, offset=0)
    async with uow_factory() as uow:
        env = await uow.environments.get(views[0].env.id)
        env.stop_after_minutes, env.started_at = 1, at(0)
        await uow.environments.update(env)
        await uow.commit()
    saved: list[str] = []  # ids of the environments UPDATEd (the statement's last parameter)

    def record(_conn, _cursor, sql, parameters, *_):
        if sql.lstrip().upper().startswith("UPDATE ENVIRONMENTS"):
            saved.append(parameters[-1])

    event.listen(engine, "before_cursor_execute", record)
    assert await sweeper.sweep() == [env.id]
    running = {v.env.id for v in views}
    assert env.id in saved and not (set(saved) & running) - {env.id}, saved  # queued ones may start meanwhile
