"""Refresh rotation is atomic on every backend (memory, SQLite, PostgreSQL): of N
concurrent refreshes of one refresh token exactly one succeeds.

Two levels: the repository's compare-and-set (``mark_used``), with each claimer holding
its transaction open a while before committing (so the claims truly overlap), and the
whole ``AuthService.refresh`` use case over the same unit of work.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from remotegpu.adapters.cache.user_cache import LocalUserCache
from remotegpu.adapters.ratelimit.memory import InMemoryRateLimiter
from remotegpu.adapters.security.jwt_tokens import JwtAccessTokenIssuer
from remotegpu.application.identity.auth import AuthService
from remotegpu.application.identity.secrets import hash_secret
from remotegpu.domain.identity.models import RefreshToken, User
from remotegpu.domain.shared.errors import Unauthenticated

N = 8
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FixedClock:
    def now(self) -> datetime:
        return T0


class NoHasher:
    async def hash(self, password: str) -> str:
        return "h:" + password

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == "h:" + password

    def needs_rehash(self, password_hash: str) -> bool:
        return False


async def seed(uow_factory) -> RefreshToken:
    user = User(id="00000000-0000-0000-0000-000000000001", username="rot", email="rot@example.com", password_hash="h:x", created_at=T0)
    token = RefreshToken(
        id="20000000-0000-0000-0000-000000000001", user_id=user.id, family_id="30000000-0000-0000-0000-000000000001",
        token_hash=hash_secret("rgr_secret"), created_at=T0, expires_at=T0 + timedelta(days=1),
    )
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.refresh_tokens.add(token)
        await uow.commit()
    return token


async def test_one_of_n_concurrent_claims_wins(uow_factory):
    token = await seed(uow_factory)
    start = asyncio.Event()

    async def claim() -> bool:
        await start.wait()
        async with uow_factory() as uow:
            won = await uow.refresh_tokens.mark_used(token.id, T0 + timedelta(seconds=1))
            await asyncio.sleep(0.05)  # hold the transaction open: the others claim meanwhile
            await uow.commit()
        return won

    tasks = [asyncio.create_task(claim()) for _ in range(N)]
    start.set()
    assert sorted(await asyncio.gather(*tasks)) == [False] * (N - 1) + [True]
    async with uow_factory() as uow:
        stored = await uow.refresh_tokens.get_by_hash(token.token_hash)
    assert stored.used_at == T0 + timedelta(seconds=1)
    async with uow_factory() as uow:
        assert await uow.refresh_tokens.mark_used(token.id, T0) is False  # used stays used


async def test_a_claim_rolled_back_on_sql_leaves_the_token_or_fails_closed(uow_factory, repo_backend):
    token = await seed(uow_factory)
    async with uow_factory() as uow:
        assert await uow.refresh_tokens.mark_used(token.id, T0) is True
        # leave without commit
    async with uow_factory() as uow:
        again = await uow.refresh_tokens.mark_used(token.id, T0)
        await uow.commit()
    # SQL rolls the claim back; the memory store keeps it (documented: it fails closed).
    assert again is (repo_backend[0] != "memory")


async def test_revoked_tokens_cannot_be_claimed(uow_factory):
    token = await seed(uow_factory)
    async with uow_factory() as uow:
        await uow.refresh_tokens.revoke_family(token.family_id, T0)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.refresh_tokens.mark_used(token.id, T0) is False


async def test_one_of_n_concurrent_refreshes_succeeds_and_the_rest_revoke_the_family(uow_factory):
    await seed(uow_factory)
    auth = AuthService(
        uow=uow_factory, clock=FixedClock(), hasher=NoHasher(), issuer=JwtAccessTokenIssuer("k" * 32),
        limiter=InMemoryRateLimiter(), users=LocalUserCache(),
    )

    async def refresh():
        try:
            return await auth.refresh("rgr_secret")
        except Unauthenticated as exc:
            return exc.code

    results = await asyncio.gather(*(refresh() for _ in range(N)))
    winners = [r for r in results if not isinstance(r, str)]
    assert len(winners) == 1, results
    # The losers presented a token that was used meanwhile: a reuse, so the family
    # (the winner's new token included) is revoked, as for any reuse. Losers that come
    # after that revocation find the token revoked.
    losers = [r for r in results if isinstance(r, str)]
    assert set(losers) <= {"refresh_token_reused", "invalid_refresh_token"} and "refresh_token_reused" in losers, losers
    async with uow_factory() as uow:
        new = await uow.refresh_tokens.get_by_hash(hash_secret(winners[0].refresh_token))
    assert new is not None and new.revoked_at is not None
