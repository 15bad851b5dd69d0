"""Where the inference router's shared state lives: in this process, or in Redis when
several server processes route (REMOTEGPU_REDIS_URL).

What is shared (everything else — readiness probes, per-request statistics — each
process keeps for itself; every process probes the replicas it routes to):

* **requests in flight per replica**: each process publishes its own counts every
  ``SYNC_SECONDS`` (a hash per process that expires when the process is gone) and reads
  its peers'; least-outstanding routing and "a draining replica goes once nothing is in
  flight" use the sum over every process;
* **held requests and arrivals per service**: published the same way, so the
  autoscaler sees the load of every process, and a request held at zero replicas by
  any process asks for a cold start;
* **one scaler**: a leader lease (``SET NX PX``, renewed by its holder) elects the one
  process that runs the autoscalers and the replica reconcile; the others reload the
  services from the database on every tick. A new leader starts its autoscalers'
  windows afresh (it scales on what it sees from then on);
* **wake-ups**: a process that holds a request publishes on a channel, so the leader
  reconciles at once; a leader that changed replicas publishes too, so the others
  reload them at once instead of on their next tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How often a process publishes its counts and reads its peers'.
SYNC_SECONDS = 0.1
#: A process not heard of for this long is gone (its counts no longer count).
PEER_TTL_MS = 3000
#: The scaler's lease.
LEASE_MS = 3000


class LocalRouterState:
    """One server process routes: nothing to share."""

    shared = False

    def __init__(self) -> None:
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"

    async def start(self, wake: Callable[[], None]) -> None:
        return None

    async def stop(self) -> None:
        return None

    def remote_in_flight(self, replica_id: str) -> int:
        return 0

    def remote_waiting(self, service_id: str) -> int:
        return 0

    async def publish(self, in_flight: dict[str, int], waiting: dict[str, int], arrivals: dict[str, int]) -> None:
        return None

    async def take_arrivals(self) -> dict[str, int]:
        return {}

    async def leader(self) -> bool:
        return True

    async def poke(self) -> None:
        return None

    def peers(self) -> int:
        return 0


_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

_TAKE = """
local v = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return v
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRouterState:
    """The router's shared state in Redis (keys under ``prefix``; see the module docstring)."""

    shared = True

    def __init__(self, redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._remote_in_flight: dict[str, int] = {}
        self._remote_waiting: dict[str, int] = {}
        self._peers = 0
        self._task: asyncio.Task | None = None
        self._pubsub = None
        self._renew = redis.register_script(_RENEW)
        self._take = redis.register_script(_TAKE)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def start(self, wake: Callable[[], None]) -> None:
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(self._key("wake"))
        self._task = asyncio.create_task(self._listen(wake), name="serve-state-wake")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        try:  # gone at once rather than after PEER_TTL_MS; the lease goes to the next process
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self._key("procs"), self.process_id)
            pipe.delete(self._key("inflight", self.process_id), self._key("waiting", self.process_id))
            await pipe.execute()
            if _text(await self.redis.get(self._key("leader")) or b"") == self.process_id:
                await self.redis.delete(self._key("leader"))
        except Exception:  # noqa: BLE001 - Redis already gone: the keys expire
            pass

    async def _listen(self, wake: Callable[[], None]) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away for a moment: the ticks go on meanwhile
                log.warning("router state: the wake channel failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if message and _text(message.get("data")) != self.process_id:
                wake()

    def remote_in_flight(self, replica_id: str) -> int:
        return self._remote_in_flight.get(replica_id, 0)

    def remote_waiting(self, service_id: str) -> int:
        return self._remote_waiting.get(service_id, 0)

    def peers(self) -> int:
        return self._peers

    async def publish(self, in_flight: dict[str, int], waiting: dict[str, int], arrivals: dict[str, int]) -> None:
        """This process's counts out, its peers' in (one round trip each way)."""
        now_ms = int(time.time() * 1000)
        mine_if, mine_w = self._key("inflight", self.process_id), self._key("waiting", self.process_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self._key("procs"), {self.process_id: now_ms})
        pipe.zremrangebyscore(self._key("procs"), "-inf", now_ms - PEER_TTL_MS)
        pipe.delete(mine_if, mine_w)
        live_if = {k: v for k, v in in_flight.items() if v}
        live_w = {k: v for k, v in waiting.items() if v}
        if live_if:
            pipe.hset(mine_if, mapping=live_if)
            pipe.pexpire(mine_if, PEER_TTL_MS)
        if live_w:
            pipe.hset(mine_w, mapping=live_w)
            pipe.pexpire(mine_w, PEER_TTL_MS)
        for sid, n in arrivals.items():
            if n:
                pipe.hincrby(self._key("arrivals"), sid, n)
        pipe.zrangebyscore(self._key("procs"), now_ms - PEER_TTL_MS, "+inf")
        procs = [_text(p) for p in (await pipe.execute())[-1]]
        peers = [p for p in procs if p != self.process_id]
        remote_if: dict[str, int] = {}
        remote_w: dict[str, int] = {}
        if peers:
            read = self.redis.pipeline(transaction=False)
            for p in peers:
                read.hgetall(self._key("inflight", p))
                read.hgetall(self._key("waiting", p))
            found = await read.execute()
            for i in range(0, len(found), 2):
                for k, v in found[i].items():
                    remote_if[_text(k)] = remote_if.get(_text(k), 0) + int(v)
                for k, v in found[i + 1].items():
                    remote_w[_text(k)] = remote_w.get(_text(k), 0) + int(v)
        self._remote_in_flight, self._remote_waiting, self._peers = remote_if, remote_w, len(peers)

    async def take_arrivals(self) -> dict[str, int]:
        flat = await self._take(keys=[self._key("arrivals")])
        return {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def leader(self) -> bool:
        return bool(await self._renew(keys=[self._key("leader")], args=[self.process_id, LEASE_MS]))

    async def poke(self) -> None:
        await self.redis.publish(self._key("wake"), self.process_id)
