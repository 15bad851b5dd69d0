"""Unit-of-work factories for the repository contract suite: memory, SQLite, PostgreSQL.

SQL schemas are created by the Alembic migrations, never by ``metadata.create_all``,
so every contract test also proves the migrations match what the repositories need.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine, create_session_factory
from remotegpu.adapters.db.migrate import upgrade, upgrade_engine
from remotegpu.adapters.db.tables import metadata
from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from tests.support.components import postgres_url


def _pg_engine(url: str, schema: str):
    # A private schema per test module: other suites may share the database.
    return create_engine(url, connect_args={"server_settings": {"search_path": schema}})


async def _pg_create_schema(url: str, schema: str) -> None:
    admin = create_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        await admin.dispose()
    engine = _pg_engine(url, schema)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def _pg_drop_schema(url: str, schema: str) -> None:
    admin = create_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="module")
def repo_pg_schema():
    """(url, schema) of a migrated, private PostgreSQL schema for this test module."""
    url = postgres_url()
    schema = f"contract_{uuid.uuid4().hex[:12]}"
    # Sync fixture, no running loop here: each step runs on its own short-lived loop.
    asyncio.run(_pg_create_schema(url, schema))
    yield url, schema
    asyncio.run(_pg_drop_schema(url, schema))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def repo_backend(request):
    """The backend name, plus (url, schema) for PostgreSQL.

    Sync on purpose: the module-scoped schema fixture runs its own event loop, which
    it cannot do from inside an async fixture.
    """
    if request.param == "postgres":
        return request.param, request.getfixturevalue("repo_pg_schema")
    return request.param, None


@pytest.fixture
async def uow_factory(repo_backend, tmp_path):
    """A zero-argument factory of fresh units of work over an empty database."""
    name, pg = repo_backend
    if name == "memory":
        store = InMemoryStore()
        yield lambda: InMemoryUnitOfWork(store)
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        yield lambda: SqlUnitOfWork(sessions)


@contextlib.asynccontextmanager
async def sql_sessions(repo_backend, tmp_path):
    """A session factory over an empty SQL database: a migrated SQLite file, or this
    module's PostgreSQL schema emptied. Every SQL store's contract fixture starts here."""
    name, pg = repo_backend
    if name == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
        # The sync entry point, from a thread while this test's loop runs: as start-up does.
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
    else:
        url, schema = pg
        engine = _pg_engine(url, schema)
        async with engine.begin() as conn:
            # DELETE beats TRUNCATE on a handful of rows; children before parents.
            for table in reversed(metadata.sorted_tables):
                if table.name != "change_epoch":  # its one row is the migration's (0023), counting on
                    await conn.execute(table.delete())
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()
