"""On PostgreSQL too, the migrations build exactly the schema of adapters/db/tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.tables import metadata


async def test_migrated_postgres_schema_has_no_autogenerate_diff(repo_pg_schema):
    url, schema = repo_pg_schema
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
