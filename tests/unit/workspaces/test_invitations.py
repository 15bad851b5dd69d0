"""Invitations through the use cases, on in-memory adapters with a hand-moved clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from dependency_injector import providers

from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.shared.errors import Conflict, NotFound, QuotaExceeded
from remotegpu.domain.workspaces.models import Invitation, InvitationStatus, Role, check_invitation_addressee
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota
from remotegpu.entrypoints.containers import build_container
from tests.conftest import make_settings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(tmp_path):
    container = build_container(make_settings(tmp_path, workspace_invitation_days=3), persistence="memory")
    clock = FrozenClock(T0)
    container.clock.override(providers.Object(clock))
    return container, clock


async def user(container, name: str):
    return await container.auth_service().register(name, f"{name}@example.com", "long enough password")


def test_an_invitation_is_open_only_while_pending_and_unexpired():
    inv = Invitation("i", "w", "u", Role.MEMBER, "x", T0, T0 + timedelta(days=1))
    assert inv.is_open(T0) and not inv.is_open(T0 + timedelta(days=1))
    with pytest.raises(Conflict) as err:
        inv.check_open(T0 + timedelta(days=1))
    assert err.value.code == "invitation_expired"
    inv.status = InvitationStatus.DECLINED
    with pytest.raises(Conflict) as err:
        inv.check_open(T0)
    assert err.value.code == "invitation_closed" and err.value.details == {"status": "declined"}
    with pytest.raises(NotFound):
        check_invitation_addressee(inv, "someone-else")
    with pytest.raises(NotFound):
        check_invitation_addressee(None, "u")
    assert check_invitation_addressee(inv, "u") is inv


def test_a_user_cap_counts_owned_team_workspaces():
    cap = UserQuota(Quota(max_gpus=1), max_workspaces=2)
    cap.check_can_own_another(1)
    with pytest.raises(QuotaExceeded) as err:
        cap.check_can_own_another(2, user_id="u")
    assert err.value.details["scope"] == "user" and err.value.details["violations"][0]["resource"] == "workspaces"
    UserQuota(Quota(), max_workspaces=None).check_can_own_another(10_000)
    with pytest.raises(QuotaExceeded) as err:
        cap.resources.check_request(Usage(gpus=1), Usage(gpus=1), scope="user", username="bob")
    assert "bob" in err.value.message and err.value.details["username"] == "bob"


async def test_invitations_expire_after_the_configured_days(world):
    container, clock = world
    owner, bob = await user(container, "owner"), await user(container, "bob")
    ws = (await container.workspace_service().create(owner, "team")).workspace.id
    invitations = container.invitation_service()
    sent = await invitations.invite(owner, ws, Role.MEMBER, username="bob")
    assert sent.invitation.expires_at == T0 + timedelta(days=3)
    clock.advance(days=3)
    assert await invitations.list_mine(bob) == [] and await invitations.list_for_workspace(owner, ws) == []
    with pytest.raises(Conflict) as err:
        await invitations.accept(bob, sent.invitation.id)
    assert err.value.code == "invitation_expired"
    with pytest.raises(NotFound):
        await container.workspace_service().get(bob, ws)
    # An expired one does not block a fresh invitation.
    again = await invitations.invite(owner, ws, Role.VIEWER, username="bob")
    assert (await invitations.accept(bob, again.invitation.id)).role is Role.VIEWER


async def test_of_concurrent_accept_and_revoke_exactly_one_wins(world):
    container, _ = world
    owner, bob = await user(container, "owner"), await user(container, "bob")
    ws = (await container.workspace_service().create(owner, "team")).workspace.id
    invitations = container.invitation_service()
    for _ in range(5):
        sent = await invitations.invite(owner, ws, Role.MEMBER, username="bob")
        results = await asyncio.gather(
            invitations.accept(bob, sent.invitation.id), invitations.revoke(owner, ws, sent.invitation.id),
            invitations.accept(bob, sent.invitation.id), return_exceptions=True,
        )
        assert sum(not isinstance(r, Exception) for r in results) == 1, results
        assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
        members = {m.user_id for m, _ in await container.workspace_service().list_members(owner, ws)}
        if bob.id in members:
            await container.workspace_service().remove_member(owner, ws, bob.id)
