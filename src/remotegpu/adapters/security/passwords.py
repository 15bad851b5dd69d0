from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2PasswordHasher:
    """argon2id with the library's RFC 9106 low-memory defaults; tests pass cheaper parameters.

    One hash costs tens to hundreds of milliseconds of CPU. It runs in a small, bounded
    thread pool (argon2's C code releases the GIL), never on the event loop: the loop
    keeps answering health checks, the proxy and agent heartbeats during a burst of
    logins, and the pool's size caps how many cores the burst can take (the rest wait
    their turn in its queue). The workers also run at a lower CPU priority (Linux: per
    thread nice, inherited by argon2's lane threads), so on a busy machine the loop's
    short bursts of work go first and hashing takes what is left.
    """

    #: How much nicer than the server the hashing threads are (0-19; raising it needs no privilege).
    WORKER_NICENESS = 10

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4, workers: int = 2):
        self._ph = _Argon2(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    async def hash(self, password: str) -> str:
        return await self._run(self._ph.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self.verify_now, password_hash, password)

    def verify_now(self, password_hash: str, password: str) -> bool:
        """Verify in the calling thread (the pool's workers; tools outside an event loop)."""
        try:
            return self._ph.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._ph.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use, so building the container in a process that never hashes costs nothing.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="argon2", initializer=_lower_thread_priority,
                    initargs=(self.WORKER_NICENESS,),
                )
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def _lower_thread_priority(niceness: int) -> None:
    """Make the calling thread nicer (Linux applies ``setpriority`` to one thread id)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass
