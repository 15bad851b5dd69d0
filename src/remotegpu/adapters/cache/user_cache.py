"""User caches for request authentication.

``LocalUserCache`` serves one process (embedded mode). ``RedisBroadcastUserCache``
serves replicas: an invalidation is applied locally and published on Redis, and
every replica's subscriber evicts the user; a short TTL bounds staleness should a
message be missed while a subscriber reconnects.

The same cache keeps users' API tokens (by the secret's hash), so a request with a
token needs no database trip either. A token lives and dies with its user's entry:
invalidating the user (every revocation does, after its commit: one token, or all of
them when sessions end) drops the user's tokens too, here and, through the same
broadcast, on every replica.

A read racing an invalidation must not put the old copy back: a request reads the
user from the database (before a password change commits), the change commits and
evicts, then the request caches what it read, and that stale copy (old session epoch,
still active) would authenticate for a whole TTL. So every read takes a mark first,
and ``put`` drops a copy read before the user's latest invalidation.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import OrderedDict

from redis.asyncio import Redis

from remotegpu.domain.identity.models import ApiToken, User

log = logging.getLogger(__name__)
CHANNEL = "rgpu:user-invalidations"


class LocalUserCache:
    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 10_000, clock=time.monotonic):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, User]] = OrderedDict()
        # Invalidation sequence: every eviction takes the next number; the users evicted
        # lately remember theirs (bounded; below ``_forgotten`` we no longer know).
        self._seq = 0
        self._evicted_at: OrderedDict[str, int] = OrderedDict()
        self._forgotten = 0
        # API tokens by their secret's hash, and the hashes each user's tokens have here.
        self._tokens: OrderedDict[str, tuple[float, ApiToken]] = OrderedDict()
        self._token_hashes: dict[str, set[str]] = {}

    def get(self, user_id: str) -> User | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        expires, user = entry
        if expires < self._clock():
            self._entries.pop(user_id, None)
            return None
        return copy.copy(user)  # callers may not mutate what the cache holds

    def read_mark(self) -> int:
        return self._seq

    def put(self, user: User, read_mark: int | None = None) -> None:
        if read_mark is not None and (read_mark < self._forgotten or self._evicted_at.get(user.id, -1) > read_mark):
            return  # read before (or maybe before) the user's latest change: do not keep it
        self._entries[user.id] = (self._clock() + self._ttl, copy.copy(user))
        self._entries.move_to_end(user.id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get_token(self, token_hash: str) -> ApiToken | None:
        entry = self._tokens.get(token_hash)
        if entry is None:
            return None
        expires, token = entry
        if expires < self._clock():
            self._drop_token(token_hash)
            return None
        return copy.copy(token)

    def put_token(self, token: ApiToken, read_mark: int | None = None) -> None:
        """Remember a token read from the database after ``read_mark``; not when its user
        was invalidated since (the read may predate a revocation)."""
        if read_mark is not None and (read_mark < self._forgotten or self._evicted_at.get(token.user_id, -1) > read_mark):
            return
        self._tokens[token.token_hash] = (self._clock() + self._ttl, copy.copy(token))
        self._tokens.move_to_end(token.token_hash)
        self._token_hashes.setdefault(token.user_id, set()).add(token.token_hash)
        while len(self._tokens) > self._max:
            self._drop_token(next(iter(self._tokens)))

    def _drop_token(self, token_hash: str) -> None:
        entry = self._tokens.pop(token_hash, None)
        if entry is not None:
            hashes = self._token_hashes.get(entry[1].user_id)
            if hashes is not None:
                hashes.discard(token_hash)
                if not hashes:
                    del self._token_hashes[entry[1].user_id]

    def evict(self, user_id: str) -> None:
        self._entries.pop(user_id, None)
        for token_hash in self._token_hashes.pop(user_id, ()):
            self._tokens.pop(token_hash, None)
        self._seq += 1
        self._evicted_at[user_id] = self._seq
        self._evicted_at.move_to_end(user_id)
        while len(self._evicted_at) > self._max:
            _, self._forgotten = self._evicted_at.popitem(last=False)

    def clear(self) -> None:
        """Forget every user, and refuse copies read before now (invalidations may have been missed)."""
        self._entries.clear()
        self._tokens.clear()
        self._token_hashes.clear()
        self._evicted_at.clear()
        self._seq += 1
        self._forgotten = self._seq

    async def invalidate(self, user_id: str) -> None:
        self.evict(user_id)


class RedisBroadcastUserCache:
    def __init__(self, redis: Redis, ttl_seconds: float = 5.0, channel: str = CHANNEL):
        self._redis = redis
        self._channel = channel
        self._local = LocalUserCache(ttl_seconds=ttl_seconds)

    def get(self, user_id: str) -> User | None:
        return self._local.get(user_id)

    def read_mark(self) -> int:
        return self._local.read_mark()

    def put(self, user: User, read_mark: int | None = None) -> None:
        self._local.put(user, read_mark)

    def get_token(self, token_hash: str) -> ApiToken | None:
        return self._local.get_token(token_hash)

    def put_token(self, token: ApiToken, read_mark: int | None = None) -> None:
        self._local.put_token(token, read_mark)

    async def invalidate(self, user_id: str) -> None:
        self._local.evict(user_id)
        await self._redis.publish(self._channel, user_id)

    async def listen(self) -> None:
        """Evict users other replicas changed; runs for the life of the server."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._local.evict(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect after Redis hiccups
                log.warning("user cache subscriber lost Redis; retrying", exc_info=True)
                self._local.clear()
                await asyncio.sleep(1)
