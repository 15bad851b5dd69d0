"""What Alembic's autogenerate would still change: empty when the migrated database
matches adapters/db/tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from remotegpu.adapters.db.tables import metadata


async def autogenerate_diff(engine) -> list:
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await engine.dispose()
