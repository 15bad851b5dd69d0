"""The Alembic migrations build exactly the schema declared in adapters/db/tables.py."""

from __future__ import annotations

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade_async
from tests.support.schema import autogenerate_diff


async def test_migrating_an_empty_sqlite_database_leaves_no_autogenerate_diff(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    assert await autogenerate_diff(engine) == []


async def test_upgrading_twice_is_a_no_op(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    await upgrade_async(url)
    await upgrade_async(url)
