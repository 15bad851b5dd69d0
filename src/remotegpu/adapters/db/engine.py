"""Async engines and session factories for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 5000
POOL_SIZE, POOL_OVERFLOW = 20, 20


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``.

    Dispose it (``await engine.dispose()``) on shutdown.
    """
    parsed = make_url(url)
    # JSON columns (variables, labels, GPU lists) are read on every hot GET: orjson
    # decodes them several times faster than the standard library (same values).
    kwargs.setdefault("json_deserializer", orjson.loads)
    if parsed.database not in (None, "", ":memory:"):
        # Keep as many connections as a busy process uses at once: with SQLAlchemy's
        # default (5 kept, 10 more closed again on return) 50 concurrent requests opened
        # and closed connections all the time (a TCP connect and authentication each).
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if parsed.get_backend_name() != "sqlite":
        # No pre-ping: it cost a round trip on every checkout, i.e. on every request.
        # A connection the server dropped (PostgreSQL restarted) fails the one statement
        # that finds it: SQLAlchemy then sees a disconnect and invalidates the whole pool,
        # so the next requests get fresh connections; pool_recycle retires old ones first.
        kwargs.setdefault("pool_recycle", 1800)
        return create_async_engine(url, **kwargs)
    if parsed.database in (None, "", ":memory:"):
        # Every connection to ":memory:" would be a new, empty database: share one.
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; foreign keys are off by
    # default in SQLite (cascades depend on them); busy_timeout makes a writer wait
    # for the lock instead of failing at once with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: nothing is lazily reloaded after commit (repositories
    # return plain dataclasses anyway, but a session must never do hidden I/O).
    return async_sessionmaker(engine, expire_on_commit=False)
