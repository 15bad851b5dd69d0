"""ChangeFeed adapters: in-process fan-out, and Redis pub/sub across processes."""

from remotegpu.adapters.events.local_feed import LocalChangeFeed
from remotegpu.adapters.events.redis_feed import RedisChangeFeed

__all__ = ["LocalChangeFeed", "RedisChangeFeed"]
