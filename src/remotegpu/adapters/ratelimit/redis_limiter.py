from __future__ import annotations

from redis.asyncio import Redis


class RedisRateLimiter:
    """Fixed-window counters shared by every server replica."""

    def __init__(self, redis: Redis, prefix: str = "rgpu:rl:"):
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, limit: int, window_seconds: int) -> int:
        k = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(k)
            pipe.expire(k, window_seconds, nx=True)
            pipe.ttl(k)
            count, _, ttl = await pipe.execute()
        if count > limit:
            return max(1, int(ttl))
        return 0

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
