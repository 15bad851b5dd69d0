"""The hot reads' one statement, straight on the driver (application/shared/read_cache.py's ``HotReads``).

A cached hot read costs one statement: the caller's membership of a workspace and the
committed change epoch. Through SQLAlchemy's session (a unit of work, a greenlet, the
ORM's result machinery) that statement cost about 0.5 ms of CPU, several times the
rest of the request; straight on the driver it costs a tenth of that. The answer is
the same: the committed rows at the moment the statement runs.

PostgreSQL: a few asyncpg connections of its own, kept in a free list (asyncpg's pool
resets every connection it gets back, one more round trip per request); autocommit,
so each statement reads its own snapshot, as the read units of work do. Requests that
ask in the same turn of the event loop (or while every connection is busy) share one
statement: their (workspace, user) pairs go as two arrays, and each gets its own row
and the epoch of that one snapshot. Every check still runs after its request arrived,
so it sees every commit before that; under load the round trips (a socket write and
a read here, a statement in PostgreSQL) are paid once per batch, not per request.
SQLite (file databases): one sqlite3 connection used in the event loop's thread. In WAL
mode (engine.py) a reader never waits for a writer, and a primary-key lookup takes
microseconds: less than handing it to a thread would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

#: Whether the workspace exists, the user's role in it (NULL: not a member), and the epoch.
_MEMBERSHIP = (
    "SELECT (SELECT epoch FROM change_epoch WHERE id = 1),"
    " EXISTS (SELECT 1 FROM workspaces WHERE id = {ws}),"
    " (SELECT role FROM workspace_members WHERE workspace_id = {ws} AND user_id = {user})"
)
_EPOCH = "SELECT epoch FROM change_epoch WHERE id = 1"
#: The same for many (workspace, user) pairs at once, in their order, on one snapshot.
_MEMBERSHIPS = (
    "SELECT (SELECT epoch FROM change_epoch WHERE id = 1),"
    " EXISTS (SELECT 1 FROM workspaces w WHERE w.id = p.ws),"
    " (SELECT m.role FROM workspace_members m WHERE m.workspace_id = p.ws AND m.user_id = p.usr)"
    " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(ws, usr, n) ORDER BY p.n"
)


class PgHotReads:
    def __init__(self, dsn: str, max_connections: int = 8, **connect_kwargs: Any):
        self._dsn = dsn
        self._connect_kwargs = connect_kwargs  # e.g. server_settings (a schema's search_path in tests)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._pending: list[tuple[str, str, asyncio.Future]] = []  # asked, not yet sent
        self._flushes: set[asyncio.Task] = set()
        self.statements = 0  # sent (tests: batching happened)

    async def membership(self, workspace_id: str, user_id: str) -> tuple[int, bool, str | None]:
        return await self._ask(workspace_id, user_id)

    async def epoch(self) -> int:
        return (await self._ask("", ""))[0]  # no workspace has the empty id: the epoch alone

    async def _ask(self, workspace_id: str, user_id: str) -> tuple[int, bool, str | None]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((workspace_id, user_id, future))
        if len(self._pending) == 1:  # the first since the last batch left: send at the end of this turn
            task = asyncio.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        async with self._slots:  # while every connection is busy, the batch keeps growing
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                rows = await self._fetch(_MEMBERSHIPS, [b[0] for b in batch], [b[1] for b in batch])
            except BaseException as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("hot read cancelled"))
                        future.exception()  # retrieved: a request that went away leaves no warning
                if not isinstance(exc, Exception):
                    raise
                return
            for (*_, future), row in zip(batch, rows):
                if not future.done():  # (a request whose client went away)
                    future.set_result((row[0], row[1], row[2]))

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        for attempt in (0, 1):
            conn = self._idle.pop() if self._idle else await asyncpg.connect(self._dsn, **self._connect_kwargs)
            try:
                rows = await conn.fetch(sql, *args)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                # A connection the server dropped while idle (a restart): once more on a fresh one.
                conn.terminate()
                if attempt:
                    raise
                continue
            except BaseException:
                conn.terminate()  # cancelled mid-statement: its state is unknown
                raise
            self.statements += 1
            self._idle.append(conn)
            return rows
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for task in list(self._flushes):
            task.cancel()
        pending, self._pending = self._pending, []
        for *_, future in pending:  # asked, never sent: the server is closing
            if not future.done():
                future.set_exception(RuntimeError("hot reads closed"))
                future.exception()
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001 - closing anyway
                conn.terminate()


class SqliteHotReads:
    def __init__(self, path: str, busy_timeout_ms: int = 1000):
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._sql = _MEMBERSHIP.format(ws="?1", user="?2")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._conn = conn
        return self._conn

    async def membership(self, workspace_id: str, user_id: str) -> tuple[int, bool, str | None]:
        epoch, exists, role = self._connection().execute(self._sql, (workspace_id, user_id)).fetchone()
        return epoch, bool(exists), role

    async def epoch(self) -> int:
        return self._connection().execute(_EPOCH).fetchone()[0]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def hot_reads_for(engine: Any, **connect_kwargs: Any) -> PgHotReads | SqliteHotReads | None:
    """The engine's database, read straight; None where a second connection would not
    see the same database (SQLite in memory). ``connect_kwargs``: asyncpg's, as the
    engine's connect_args (PostgreSQL)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PgHotReads(url.set(drivername="postgresql").render_as_string(hide_password=False), **connect_kwargs)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return SqliteHotReads(url.database)
    return None
