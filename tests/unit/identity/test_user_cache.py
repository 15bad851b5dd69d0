"""The user cache never keeps a copy read before that user's latest invalidation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from remotegpu.adapters.cache.user_cache import LocalUserCache
from remotegpu.domain.identity.models import User

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def user(n: int = 1, **kw) -> User:
    return User(id=f"u{n}", username=f"user{n}", email=f"u{n}@example.com", password_hash="x", created_at=NOW, **kw)


async def test_a_read_that_raced_an_invalidation_is_not_cached():
    cache = LocalUserCache()
    mark = cache.read_mark()  # a request starts reading the user from the database...
    stale = user()
    await cache.invalidate("u1")  # ...a password change commits and invalidates meanwhile...
    cache.put(stale, mark)  # ...and the request would cache what it read before the change
    assert cache.get("u1") is None
    fresh = replace(user(), session_epoch=1)
    cache.put(fresh, cache.read_mark())
    assert cache.get("u1").session_epoch == 1


async def test_other_users_invalidations_do_not_block_caching():
    cache = LocalUserCache()
    mark = cache.read_mark()
    await cache.invalidate("u2")
    cache.put(user(1), mark)
    assert cache.get("u1") is not None


async def test_when_invalidations_are_forgotten_old_reads_are_refused():
    cache = LocalUserCache(max_entries=2)
    mark = cache.read_mark()
    for n in range(1, 5):
        await cache.invalidate(f"u{n}")  # u1's invalidation falls out of the bounded memory
    cache.put(user(1), mark)
    assert cache.get("u1") is None
    cache.put(user(1), cache.read_mark())
    assert cache.get("u1") is not None


async def test_clear_refuses_reads_from_before():
    cache = LocalUserCache()
    cache.put(user(1))
    mark = cache.read_mark()
    cache.clear()  # e.g. the Redis subscriber reconnected: invalidations may have been missed
    assert cache.get("u1") is None
    cache.put(user(1), mark)
    assert cache.get("u1") is None
