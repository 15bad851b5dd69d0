"""Repository contract for invitations, per-user caps and ownership sums: memory, SQLite
and PostgreSQL behave alike (fixture ``uow_factory``, conftest.py)."""

from __future__ import annotations

from datetime import timedelta

from remotegpu.domain.environments.models import EnvStatus, GpuAllocation
from remotegpu.domain.workspaces.models import Invitation, InvitationStatus, Membership, Role
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota
from tests.contract.test_fleet_environment_repositories import add_envs, add_hosts, make_env, make_host
from tests.contract.test_repositories import add_users, at, make_user, make_workspace


def invitation(n: int, workspace_id: str, user_id: str, inviter_id: str, *, created: float = 0, days: float = 7) -> Invitation:
    return Invitation(
        id=f"40000000-0000-0000-0000-{n:012d}", workspace_id=workspace_id, user_id=user_id, role=Role.MEMBER,
        invited_by=inviter_id, created_at=at(created), expires_at=at(created) + timedelta(days=days),
    )


async def test_invitations_round_trip_list_only_open_ones_and_close_once(uow_factory):
    owner, bob, carol = make_user(1), make_user(2), make_user(3)
    await add_users(uow_factory, owner, bob, carol)
    ws, other = make_workspace(1, owner), make_workspace(2, owner)
    to_bob = invitation(1, ws.id, bob.id, owner.id, created=1)
    to_carol = invitation(2, ws.id, carol.id, owner.id, created=2)
    expired = invitation(3, other.id, bob.id, owner.id, created=0, days=0.001)
    elsewhere = invitation(4, other.id, bob.id, owner.id, created=3)
    async with uow_factory() as uow:
        for w in (ws, other):
            await uow.workspaces.add(w)
        for i in (to_bob, to_carol, expired, elsewhere):
            await uow.workspaces.add_invitation(i)
        await uow.commit()
    now = at(10)
    async with uow_factory() as uow:
        assert await uow.workspaces.get_invitation(to_bob.id) == to_bob
        assert await uow.workspaces.get_invitation("nope") is None
        assert await uow.workspaces.list_open_invitations(now=now, workspace_id=ws.id) == [to_bob, to_carol]
        assert await uow.workspaces.list_open_invitations(now=now, user_id=bob.id) == [to_bob, elsewhere]  # not the expired one
        assert await uow.workspaces.list_open_invitations(now=now, workspace_id=ws.id, user_id=carol.id) == [to_carol]
        assert await uow.workspaces.close_invitation(to_bob.id, InvitationStatus.ACCEPTED, now) is True
        assert await uow.workspaces.close_invitation(to_bob.id, InvitationStatus.REVOKED, now) is False  # answered already
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.workspaces.get_invitation(to_bob.id)
        assert got.status is InvitationStatus.ACCEPTED and got.responded_at == now
        assert await uow.workspaces.list_open_invitations(now=now, workspace_id=ws.id) == [to_carol]
        await uow.workspaces.delete(ws.id)  # invitations go with their workspace
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_invitation(to_carol.id) is None
        assert await uow.workspaces.get_invitation(elsewhere.id) == elsewhere


async def test_a_user_cap_is_absent_until_set_round_trips_and_clears(uow_factory):
    alice = make_user(1)
    await add_users(uow_factory, alice)
    cap = UserQuota(Quota(max_gpus=2, max_storage_gib=100), max_workspaces=3)
    async with uow_factory() as uow:
        assert await uow.workspaces.get_user_quota(alice.id) is None
        await uow.workspaces.set_user_quota(alice.id, cap)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_user_quota(alice.id) == cap
        await uow.workspaces.set_user_quota(alice.id, UserQuota(Quota(max_environments=0)))  # replaces, not merges
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_user_quota(alice.id) == UserQuota(Quota(max_environments=0))
        await uow.workspaces.clear_user_quota(alice.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_user_quota(alice.id) is None


async def test_clearing_a_workspace_quota_brings_back_the_default(uow_factory):
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ws = make_workspace(1, owner)
    async with uow_factory() as uow:
        await uow.workspaces.add(ws)
        await uow.workspaces.set_quota(ws.id, Quota(max_gpus=1))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.workspaces.clear_quota(ws.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_quota(ws.id) is None


async def test_owned_usage_sums_every_workspace_the_user_owns_and_nothing_else(uow_factory):
    alice, bob = make_user(1), make_user(2)
    await add_users(uow_factory, alice, bob)
    personal = make_workspace(1, alice, is_personal=True, slug="alice-personal")
    team = make_workspace(2, alice)
    bobs = make_workspace(3, bob)  # alice is only a member here
    async with uow_factory() as uow:
        for w in (personal, team, bobs):
            await uow.workspaces.add(w)
        await uow.workspaces.add_member(Membership(personal.id, alice.id, Role.OWNER, at(1)))
        await uow.workspaces.add_member(Membership(team.id, alice.id, Role.OWNER, at(1)))
        await uow.workspaces.add_member(Membership(team.id, bob.id, Role.OWNER, at(2)))
        await uow.workspaces.add_member(Membership(bobs.id, bob.id, Role.OWNER, at(1)))
        await uow.workspaces.add_member(Membership(bobs.id, alice.id, Role.ADMIN, at(2)))
        await uow.commit()
    host = make_host(1, gpus=4)
    envs = [
        make_env(1, personal.id, status=EnvStatus.RUNNING, cpu_cores=2, memory_gib=8, disk_gib=10),
        make_env(2, team.id, status=EnvStatus.RUNNING, cpu_cores=4, memory_gib=16, disk_gib=20),
        make_env(3, bobs.id, status=EnvStatus.RUNNING, cpu_cores=8, memory_gib=32, disk_gib=40),
        make_env(4, team.id, status=EnvStatus.DELETED, cpu_cores=16, memory_gib=64, disk_gib=80),
    ]
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, *envs)
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(envs[0].id, host.id, host.gpus[0].uuid)])
        await uow.allocations.add_gpus([GpuAllocation(envs[1].id, host.id, host.gpus[1].uuid)])
        await uow.allocations.add_gpus([GpuAllocation(envs[2].id, host.id, host.gpus[2].uuid)])
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.owned_usage(alice.id) == Usage(gpus=2, environments=2, cpu_cores=6, memory_gib=24, storage_gib=30)
        # A workspace with two owners counts in full for each.
        assert await uow.workspaces.owned_usage(bob.id) == Usage(gpus=2, environments=2, cpu_cores=12, memory_gib=48, storage_gib=60)
        assert await uow.workspaces.owned_usage("nobody") == Usage()
        assert await uow.workspaces.list_owners(team.id) == sorted([alice.id, bob.id])
        assert await uow.workspaces.list_owners(bobs.id) == [bob.id]
        assert await uow.workspaces.count_owned(alice.id) == 1  # the personal one does not count
        assert await uow.workspaces.count_owned(bob.id) == 2
