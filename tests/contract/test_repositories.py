"""The repository contract: every backend (memory, SQLite, PostgreSQL) behaves alike.

Each test gets ``uow_factory`` (see conftest.py) over an empty database. After a
Conflict a test opens a new unit of work: on PostgreSQL the failed one is unusable.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.domain.identity.models import ApiToken, AuditEvent, Invite, RefreshToken, SshKey, User
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.workspaces.models import Membership, Role, Workspace
from remotegpu.domain.workspaces.quota import Quota, Usage

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_user(n: int, **kw) -> User:
    values = dict(
        id=f"00000000-0000-0000-0000-{n:012d}", username=f"user{n}", email=f"user{n}@example.com",
        password_hash="$argon2id$x", created_at=at(n), display_name=f"User {n}",
    )
    return User(**{**values, **kw})


def make_workspace(n: int, owner: User, **kw) -> Workspace:
    values = dict(
        id=f"10000000-0000-0000-0000-{n:012d}", name=f"Team {n}", slug=f"team-{n}", is_personal=False,
        created_by=owner.id, created_at=at(n),
    )
    return Workspace(**{**values, **kw})


async def add_users(uow_factory, *users: User) -> None:
    async with uow_factory() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()


# --- users ----------------------------------------------------------------------------------


async def test_a_committed_user_reads_back_field_for_field(uow_factory):
    user = make_user(1, is_admin=True, last_login_at=at(5))
    await add_users(uow_factory, user)
    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.get_by_username("user1") == user
        assert await uow.users.get_by_email("user1@example.com") == user
        assert await uow.users.get("nope") is None
        assert await uow.users.get_by_username("nobody") is None
        assert await uow.users.count() == 1


async def test_timestamps_come_back_utc_aware_and_equal(uow_factory):
    plus_two = timezone(timedelta(hours=2))
    user = make_user(1, created_at=datetime(2026, 3, 1, 14, 0, 0, 999999, tzinfo=plus_two))
    await add_users(uow_factory, user)
    async with uow_factory() as uow:
        got = await uow.users.get(user.id)
    assert got.created_at == user.created_at
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.tzinfo == timezone.utc
    assert got.last_login_at is None


async def test_naive_datetimes_are_refused(uow_factory):
    async with uow_factory() as uow:
        with pytest.raises(ValueError):
            await uow.users.add(make_user(1, created_at=datetime(2026, 1, 1)))


async def test_update_persists_but_mutating_a_returned_object_does_not(uow_factory):
    await add_users(uow_factory, make_user(1))
    async with uow_factory() as uow:
        user = await uow.users.get(make_user(1).id)
        user.display_name = "changed without update"
        await uow.commit()
    async with uow_factory() as uow:
        user = await uow.users.get(make_user(1).id)
        assert user.display_name == "User 1"
        user.is_active, user.last_login_at = False, at(9)
        await uow.users.update(user)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user


@pytest.mark.parametrize("field", ["username", "email"])
async def test_a_duplicate_username_or_email_is_a_conflict(uow_factory, field):
    await add_users(uow_factory, make_user(1))
    clash = make_user(2, **{field: getattr(make_user(1), field)})
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.users.add(clash)
            await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.count() == 1


async def test_updating_to_a_taken_email_is_a_conflict(uow_factory):
    await add_users(uow_factory, make_user(1), make_user(2))
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.users.update(replace(make_user(2), email="user1@example.com"))
            await uow.commit()


async def test_leaving_without_commit_discards_everything(uow_factory):
    await add_users(uow_factory, make_user(1))
    async with uow_factory() as uow:
        await uow.users.add(make_user(2))
        await uow.users.update(replace(make_user(1), display_name="gone"))
        assert await uow.users.count() == 2  # a unit of work sees its own changes
    async with uow_factory() as uow:
        await uow.users.add(make_user(3))
        await uow.rollback()
        await uow.users.add(make_user(4))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(make_user(2).id) is None
        assert await uow.users.get(make_user(3).id) is None
        assert (await uow.users.get(make_user(1).id)).display_name == "User 1"
        assert await uow.users.get(make_user(4).id) is not None


async def test_uncommitted_changes_are_invisible_to_other_units_of_work(uow_factory):
    writer, reader = uow_factory(), uow_factory()
    async with writer:
        await writer.users.add(make_user(1))
        async with reader:
            assert await reader.users.get(make_user(1).id) is None
        await writer.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(make_user(1).id) == make_user(1)


async def test_leaving_on_an_exception_rolls_back(uow_factory):
    with pytest.raises(RuntimeError):
        async with uow_factory() as uow:
            await uow.users.add(make_user(1))
            raise RuntimeError("use case failed")
    async with uow_factory() as uow:
        assert await uow.users.count() == 0


async def test_users_list_orders_by_creation_searches_and_pages(uow_factory):
    await add_users(
        uow_factory, make_user(3), make_user(1), make_user(2, display_name="Ada Lovelace"),
        make_user(4, email="ada@lab.example"), make_user(5, username="x_ada"),
    )
    async with uow_factory() as uow:
        page, total = await uow.users.list(search=None, limit=2, offset=1)
        assert [u.username for u in page] == ["user2", "user3"] and total == 5
        found, total = await uow.users.list(search="ADA", limit=10, offset=0)
        assert [u.id for u in found] == [make_user(n).id for n in (2, 4, 5)] and total == 3
        found, total = await uow.users.list(search="%", limit=10, offset=0)  # a literal, not a wildcard
        assert found == [] and total == 0
        found, total = await uow.users.list(search="_ada", limit=10, offset=0)
        assert [u.username for u in found] == ["x_ada"]


# --- tokens, keys, invites ------------------------------------------------------------------


async def test_api_tokens_round_trip_and_hashes_are_unique(uow_factory):
    owner = make_user(1)
    await add_users(uow_factory, owner)
    first = ApiToken("t1", owner.id, "ci", "hash-1", "rgp_abc", at(1), expires_at=at(100))
    second = ApiToken("t2", owner.id, "laptop", "hash-2", "rgp_def", at(2))
    async with uow_factory() as uow:
        await uow.api_tokens.add(second)
        await uow.api_tokens.add(first)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.api_tokens.get("t1") == first
        assert await uow.api_tokens.get_by_hash("hash-2") == second
        assert await uow.api_tokens.list_for_user(owner.id) == [first, second]
        first.last_used_at, first.revoked_at = at(3), at(4)
        await uow.api_tokens.update(first)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.api_tokens.get("t1") == first
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.api_tokens.add(ApiToken("t3", owner.id, "dup", "hash-1", "rgp_x", at(5)))


async def test_a_token_of_an_unknown_user_is_a_conflict(uow_factory):
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.api_tokens.add(ApiToken("t1", "no-such-user", "ci", "hash-1", "rgp_abc", at(1)))
            await uow.commit()


def refresh(n: int, user: User, family: str, *, expires: float = 60, revoked: float | None = None) -> RefreshToken:
    return RefreshToken(
        f"r{n}", user.id, family, f"rhash-{n}", at(n), at(expires),
        revoked_at=None if revoked is None else at(revoked),
    )


async def test_refresh_tokens_revoke_by_family_and_by_user(uow_factory):
    alice, bob = make_user(1), make_user(2)
    await add_users(uow_factory, alice, bob)
    tokens = [refresh(1, alice, "fa"), refresh(2, alice, "fa", revoked=2), refresh(3, alice, "fb"), refresh(4, bob, "fc")]
    async with uow_factory() as uow:
        for t in tokens:
            await uow.refresh_tokens.add(t)
        await uow.commit()
    async with uow_factory() as uow:
        r1 = await uow.refresh_tokens.get_by_hash("rhash-1")
        assert r1 == tokens[0]
        r1.used_at = at(7)
        await uow.refresh_tokens.update(r1)
        await uow.refresh_tokens.revoke_family("fa", at(10))
        await uow.commit()
    async with uow_factory() as uow:
        got = {n: await uow.refresh_tokens.get_by_hash(f"rhash-{n}") for n in (1, 2, 3, 4)}
        assert got[1].used_at == at(7) and got[1].revoked_at == at(10)
        assert got[2].revoked_at == at(2)  # an earlier revocation keeps its time
        assert got[3].revoked_at is None and got[4].revoked_at is None
        await uow.refresh_tokens.revoke_all_for_user(alice.id, at(20))
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.refresh_tokens.get_by_hash("rhash-3")).revoked_at == at(20)
        assert (await uow.refresh_tokens.get_by_hash("rhash-1")).revoked_at == at(10)
        assert (await uow.refresh_tokens.get_by_hash("rhash-4")).revoked_at is None


async def test_delete_expired_refresh_tokens_counts_what_it_removed(uow_factory):
    alice = make_user(1)
    await add_users(uow_factory, alice)
    async with uow_factory() as uow:
        for n, expires in ((1, 10), (2, 20), (3, 30)):
            await uow.refresh_tokens.add(refresh(n, alice, "f", expires=expires))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.refresh_tokens.delete_expired(at(20)) == 1  # strictly before
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.refresh_tokens.get_by_hash("rhash-1") is None
        assert await uow.refresh_tokens.get_by_hash("rhash-2") is not None
        assert await uow.refresh_tokens.delete_expired(at(0)) == 0


async def test_ssh_keys_are_unique_per_user_and_fingerprint(uow_factory):
    alice, bob = make_user(1), make_user(2)
    await add_users(uow_factory, alice, bob)
    key = SshKey("k1", alice.id, "laptop", "ssh-ed25519", "ssh-ed25519 AAAA", "SHA256:abc", at(1), comment="a@host")
    async with uow_factory() as uow:
        await uow.ssh_keys.add(key)
        await uow.ssh_keys.add(replace(key, id="k2", user_id=bob.id))  # another user may hold it too
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ssh_keys.get("k1") == key
        assert await uow.ssh_keys.get_by_fingerprint(alice.id, "SHA256:abc") == key
        assert await uow.ssh_keys.list_for_user(alice.id) == [key]
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.ssh_keys.add(replace(key, id="k3", name="again"))
    async with uow_factory() as uow:
        await uow.ssh_keys.delete("k1")
        await uow.ssh_keys.delete("unknown")  # silently nothing
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ssh_keys.list_for_user(alice.id) == []
        assert [k.id for k in await uow.ssh_keys.list_for_user(bob.id)] == ["k2"]


async def test_invites_round_trip(uow_factory):
    admin = make_user(1)
    await add_users(uow_factory, admin)
    invite = Invite("i1", "code-hash", admin.id, at(1), at(60))
    async with uow_factory() as uow:
        await uow.invites.add(invite)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.invites.get_by_hash("code-hash") == invite
        invite.used_by, invite.used_at = "someone", at(2)
        await uow.invites.update(invite)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.invites.get_by_hash("code-hash") == invite
        with pytest.raises(Conflict):
            await uow.invites.add(replace(invite, id="i2"))


# --- audit ----------------------------------------------------------------------------------


async def test_audit_lists_newest_first_with_filters_and_pages(uow_factory):
    events = [
        AuditEvent(f"a{n}", action, at(n), actor_id=actor, target_type="user", target_id="u", ip="10.0.0.1",
                   details={"n": n, "nested": {"ok": True}, "list": [1, "x"]})
        for n, action, actor in (
            (1, "auth.login.succeeded", "u1"), (2, "auth.login.failed", None), (3, "auth.login.succeeded", "u2"),
            (4, "auth.login.succeeded", "u1"), (5, "token.created", "u1"),
        )
    ]
    async with uow_factory() as uow:
        for e in events:
            await uow.audit.add(e)
        await uow.commit()
    async with uow_factory() as uow:
        page, total = await uow.audit.list(action=None, actor_id=None, limit=2, offset=1)
        assert [e.id for e in page] == ["a4", "a3"] and total == 5
        assert page[0] == events[3]
        found, total = await uow.audit.list(action="auth.login.succeeded", actor_id="u1", limit=10, offset=0)
        assert [e.id for e in found] == ["a4", "a1"] and total == 2
        found, total = await uow.audit.list(action=None, actor_id="u1", limit=1, offset=0)
        assert [e.id for e in found] == ["a5"] and total == 3
        assert await uow.audit.delete_before(at(3)) == 2
        await uow.commit()
    async with uow_factory() as uow:
        remaining, total = await uow.audit.list(action=None, actor_id=None, limit=10, offset=0)
        assert [e.id for e in remaining] == ["a5", "a4", "a3"] and total == 3


# --- workspaces -----------------------------------------------------------------------------


async def test_workspaces_round_trip_and_slugs_are_unique(uow_factory):
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ws = make_workspace(1, owner)
    async with uow_factory() as uow:
        await uow.workspaces.add(ws)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get(ws.id) == ws
        assert await uow.workspaces.slug_taken("team-1") and not await uow.workspaces.slug_taken("team-2")
        ws.name = "Renamed"
        await uow.workspaces.update(ws)
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.workspaces.get(ws.id)).name == "Renamed"
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.workspaces.add(make_workspace(2, owner, slug="team-1"))


async def test_list_for_user_pages_the_users_workspaces_with_their_role(uow_factory):
    alice, bob = make_user(1), make_user(2)
    await add_users(uow_factory, alice, bob)
    spaces = [make_workspace(n, alice) for n in (3, 1, 2, 4)]
    async with uow_factory() as uow:
        for ws in spaces:
            await uow.workspaces.add(ws)
            await uow.workspaces.add_member(Membership(ws.id, alice.id, Role.OWNER, ws.created_at))
        await uow.workspaces.add_member(Membership(spaces[0].id, bob.id, Role.VIEWER, at(9)))
        await uow.commit()
    async with uow_factory() as uow:
        page, total = await uow.workspaces.list_for_user(alice.id, limit=2, offset=1)
        assert total == 4
        assert [(w.slug, m.role) for w, m in page] == [("team-2", Role.OWNER), ("team-3", Role.OWNER)]
        assert page[1][1] == Membership(spaces[0].id, alice.id, Role.OWNER, spaces[0].created_at)
        mine, total = await uow.workspaces.list_for_user(bob.id, limit=10, offset=0)
        assert [(w, m) for w, m in mine] == [(spaces[0], Membership(spaces[0].id, bob.id, Role.VIEWER, at(9)))]
        everything, total = await uow.workspaces.list_all(limit=3, offset=0)
        assert [w.slug for w in everything] == ["team-1", "team-2", "team-3"] and total == 4


async def test_list_all_pages_every_workspace_and_searches_name_or_slug(uow_factory):
    alice, bob = make_user(1), make_user(2)
    await add_users(uow_factory, alice, bob)
    spaces = [
        make_workspace(3, alice, name="Vision Lab", slug="vision-lab"),
        make_workspace(1, bob, name="bob", slug="bob", is_personal=True),
        make_workspace(2, alice, name="NLP", slug="nlp-50%_off"),
    ]
    async with uow_factory() as uow:
        for ws in spaces:
            await uow.workspaces.add(ws)
        await uow.commit()
    async with uow_factory() as uow:
        page, total = await uow.workspaces.list_all(limit=2, offset=1)
        assert [w.slug for w in page] == ["nlp-50%_off", "vision-lab"] and total == 3
        assert page[1] == spaces[0]
        found, total = await uow.workspaces.list_all(search="LAB", limit=10, offset=0)
        assert [w.slug for w in found] == ["vision-lab"] and total == 1
        found, total = await uow.workspaces.list_all(search="50%_", limit=10, offset=0)  # wildcards are literal
        assert [w.slug for w in found] == ["nlp-50%_off"] and total == 1
        found, total = await uow.workspaces.list_all(search="%", limit=10, offset=0)
        assert total == 1
        assert await uow.workspaces.list_all(search="nobody", limit=10, offset=0) == ([], 0)
        _, total = await uow.workspaces.list_all(search="", limit=10, offset=0)
        assert total == 3


async def test_members_are_added_changed_listed_and_removed(uow_factory):
    alice, bob, carol = make_user(1), make_user(2), make_user(3)
    await add_users(uow_factory, alice, bob, carol)
    ws = make_workspace(1, alice)
    async with uow_factory() as uow:
        await uow.workspaces.add(ws)
        await uow.workspaces.add_member(Membership(ws.id, alice.id, Role.OWNER, at(1)))
        await uow.workspaces.add_member(Membership(ws.id, bob.id, Role.MEMBER, at(2)))
        await uow.commit()
    async with uow_factory() as uow:
        bob_m = await uow.workspaces.get_member(ws.id, bob.id)
        assert bob_m == Membership(ws.id, bob.id, Role.MEMBER, at(2))
        assert await uow.workspaces.get_member(ws.id, carol.id) is None
        bob_m.role = Role.ADMIN
        await uow.workspaces.update_member(bob_m)
        await uow.workspaces.remove_member(ws.id, alice.id)
        await uow.workspaces.remove_member(ws.id, carol.id)  # not a member: silently nothing
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.list_members(ws.id) == [Membership(ws.id, bob.id, Role.ADMIN, at(2))]
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.workspaces.add_member(Membership(ws.id, bob.id, Role.VIEWER, at(3)))
    async with uow_factory() as uow:
        with pytest.raises(Conflict):  # no such workspace
            await uow.workspaces.add_member(Membership("no-such-workspace", bob.id, Role.VIEWER, at(3)))
            await uow.commit()


async def test_quota_is_absent_until_set_and_round_trips(uow_factory):
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ws = make_workspace(1, owner)
    async with uow_factory() as uow:
        await uow.workspaces.add(ws)
        assert await uow.workspaces.get_quota(ws.id) is None  # none of its own: the configured default applies
        await uow.workspaces.set_quota(ws.id, Quota(max_gpus=4, max_storage_gib=100))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_quota(ws.id) == Quota(max_gpus=4, max_storage_gib=100)
        await uow.workspaces.set_quota(ws.id, Quota(max_environments=0))  # replaces, not merges
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get_quota(ws.id) == Quota(max_environments=0)
        assert await uow.workspaces.usage(ws.id) == Usage()


async def test_deleting_a_workspace_removes_its_members_and_quota(uow_factory):
    owner, member = make_user(1), make_user(2)
    await add_users(uow_factory, owner, member)
    ws, other = make_workspace(1, owner), make_workspace(2, owner)
    async with uow_factory() as uow:
        for w in (ws, other):
            await uow.workspaces.add(w)
            await uow.workspaces.add_member(Membership(w.id, owner.id, Role.OWNER, at(1)))
            await uow.workspaces.set_quota(w.id, Quota(max_gpus=1))
        await uow.workspaces.add_member(Membership(ws.id, member.id, Role.MEMBER, at(2)))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.workspaces.delete(ws.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.get(ws.id) is None
        assert await uow.workspaces.list_members(ws.id) == []
        assert await uow.workspaces.get_member(ws.id, member.id) is None
        assert await uow.workspaces.get_quota(ws.id) is None
        assert not await uow.workspaces.slug_taken(ws.slug)
        _, total = await uow.workspaces.list_for_user(owner.id, limit=10, offset=0)
        assert total == 1
        assert await uow.workspaces.get_quota(other.id) == Quota(max_gpus=1)
        assert len(await uow.workspaces.list_members(other.id)) == 1
