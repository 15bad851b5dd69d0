"""Personal API tokens (``rgpu_…``) are served from the user cache: no database trip per
request, once a minute a trip to write the last-used stamp; and every revocation (one
token, all of them with "sign out everywhere", a disabled account) is refused on the very
next request. Memory, SQLite and PostgreSQL alike (fixture ``uow_factory``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.adapters.cache.user_cache import LocalUserCache
from remotegpu.adapters.ratelimit.memory import InMemoryRateLimiter
from remotegpu.adapters.security.jwt_tokens import JwtAccessTokenIssuer
from remotegpu.application.identity.account import AccountService
from remotegpu.application.identity.auth import AuthService
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Unauthenticated
from tests.contract.test_refresh_rotation import NoHasher

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.value = T0

    def now(self) -> datetime:
        return self.value


class CountingUow:
    """The unit-of-work factory, counting the units of work opened (database trips)."""

    def __init__(self, inner) -> None:
        self.inner, self.opened = inner, 0

    def __call__(self):
        self.opened += 1
        return self.inner()


@pytest.fixture
async def world(uow_factory):
    user = User(id="00000000-0000-0000-0000-0000000000c1", username="ci", email="ci@example.com", password_hash="x", created_at=T0)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    clock, cache, uow = Clock(), LocalUserCache(), CountingUow(uow_factory)
    auth = AuthService(uow=uow, clock=clock, hasher=NoHasher(), issuer=JwtAccessTokenIssuer("k" * 32),
                       limiter=InMemoryRateLimiter(), users=cache)
    account = AccountService(uow=uow, clock=clock, hasher=NoHasher(), users=cache)
    return user, clock, uow, auth, account


async def test_a_token_in_use_costs_no_database_trip_but_its_stamp_once_a_minute(world, uow_factory):
    user, clock, uow, auth, account = world
    created = await account.create_api_token(user.id, "ci")
    before = uow.opened
    assert (await auth.authenticate(created.secret)).user.id == user.id  # read, stamped, cached
    after_first = uow.opened
    assert after_first > before
    for _ in range(20):
        clock.value += timedelta(seconds=2)
        principal = await auth.authenticate(created.secret)
        assert principal.via == "api_token" and principal.token_id == created.token.id
    assert uow.opened == after_first  # 20 requests, no database trip
    clock.value += timedelta(seconds=61)
    await auth.authenticate(created.secret)  # the stamp is a minute old: written, one trip
    assert uow.opened == after_first + 1
    async with uow_factory() as u:
        assert (await u.api_tokens.get(created.token.id)).last_used_at == clock.value
    with pytest.raises(Unauthenticated):
        await auth.authenticate(created.secret + "x")  # an unknown secret is never served from the cache


async def test_a_revoked_token_is_refused_on_the_next_request(world):
    user, clock, uow, auth, account = world
    kept, revoked = await account.create_api_token(user.id, "kept"), await account.create_api_token(user.id, "gone")
    for secret in (kept.secret, revoked.secret) * 2:
        await auth.authenticate(secret)  # both cached
    await account.revoke_api_token(user.id, revoked.token.id)
    with pytest.raises(Unauthenticated) as exc:
        await auth.authenticate(revoked.secret)
    assert exc.value.code == "invalid_token"
    assert (await auth.authenticate(kept.secret)).token_id == kept.token.id
    # Signing out everywhere with the tokens: all of them, at once.
    await account.sign_out_everywhere(user.id, revoke_api_tokens=True)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(kept.secret)


async def test_a_disabled_account_and_an_expired_token_are_refused_at_once(world, uow_factory):
    user, clock, uow, auth, account = world
    short = await account.create_api_token(user.id, "short", expires_in_days=1)
    await auth.authenticate(short.secret)
    clock.value += timedelta(days=1)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(short.secret)  # expired, though cached
    created = await account.create_api_token(user.id, "ci")
    await auth.authenticate(created.secret)
    async with uow_factory() as u:
        row = await u.users.get(user.id)
        row.is_active = False
        await u.users.update(row)
        await u.commit()
    await auth.users.invalidate(user.id)  # as every use case that changes a user does after its commit
    with pytest.raises(Unauthenticated) as exc:
        await auth.authenticate(created.secret)
    assert exc.value.code in ("account_disabled", "invalid_token")


async def test_a_token_read_before_its_revocation_is_not_cached():
    cache = LocalUserCache()
    from remotegpu.domain.identity.models import ApiToken

    token = ApiToken(id="t1", user_id="u1", name="ci", token_hash="h1", prefix="rgpu_x", created_at=T0, last_used_at=T0)
    mark = cache.read_mark()  # a request reads the token...
    await cache.invalidate("u1")  # ...its revocation commits and invalidates the user meanwhile...
    cache.put_token(token, mark)  # ...and the request would keep what it read before
    assert cache.get_token("h1") is None
    cache.put_token(token, cache.read_mark())
    assert cache.get_token("h1") == token
    await cache.invalidate("u2")  # another user's change leaves it
    assert cache.get_token("h1") == token
    await cache.invalidate("u1")
    assert cache.get_token("h1") is None
