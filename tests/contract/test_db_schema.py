"""On PostgreSQL too, the migrations build exactly the schema of adapters/db/tables.py."""

from __future__ import annotations

from remotegpu.adapters.db.engine import create_engine
from tests.support.schema import autogenerate_diff


async def test_migrated_postgres_schema_has_no_autogenerate_diff(repo_pg_schema):
    url, schema = repo_pg_schema
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    assert await autogenerate_diff(engine) == []
