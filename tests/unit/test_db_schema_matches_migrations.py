"""The Alembic migrations build exactly the schema declared in adapters/db/tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade_async
from remotegpu.adapters.db.tables import metadata


async def test_migrating_an_empty_sqlite_database_leaves_no_autogenerate_diff(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_upgrading_twice_is_a_no_op(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    await upgrade_async(url)
    await upgrade_async(url)
