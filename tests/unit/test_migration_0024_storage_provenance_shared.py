"""Migration 0024: versions and blobs made before it read as uploaded by a person and
stored at the classic key; the downgrade drops the new columns and the shared-disk table."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async

_NOW = "2026-01-01 00:00:00"


async def test_existing_versions_and_blobs_keep_working_and_the_downgrade_undoes_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0022")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA foreign_keys=OFF"))  # no workspace/user rows: only the storage tables matter here
            await conn.execute(text(
                "INSERT INTO storage_repositories (id, workspace_id, kind, name, description, visibility, tags, model, created_by,"
                " created_at, updated_at) VALUES ('r1', 'w1', 'model', 'm', '', 'private', '{}', NULL, 'u1', :t, :t)"), {"t": _NOW})
            await conn.execute(text("INSERT INTO storage_versions (repository_id, number, message, created_by, created_at)"
                                    " VALUES ('r1', 1, '', 'u1', :t)"), {"t": _NOW})
            await conn.execute(text("INSERT INTO storage_blobs (sha256, size, created_at) VALUES (:s, 3, :t)"),
                               {"s": "a" * 64, "t": _NOW})
        await upgrade_async(url)
        async with engine.connect() as conn:
            version = tuple((await conn.execute(text("SELECT source_kind, source_id FROM storage_versions"))).one())
            blob = tuple((await conn.execute(text("SELECT object_key FROM storage_blobs"))).one())
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert version == (None, None) and blob == (None,) and "workspace_shared_disks" in tables

        def downgrade(connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0022")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)

        def shape(c):
            i = inspect(c)
            return (set(i.get_table_names()), {col["name"] for col in i.get_columns("storage_versions")},
                    {col["name"] for col in i.get_columns("storage_blobs")}, {col["name"] for col in i.get_columns("storage_uploads")})

        async with engine.connect() as conn:
            tables, versions, blobs, uploads = await conn.run_sync(shape)
            count = (await conn.execute(text("SELECT count(*) FROM storage_versions"))).scalar_one()
    finally:
        await engine.dispose()
    assert "workspace_shared_disks" not in tables and count == 1
    assert not {"source_kind", "source_id"} & (versions | uploads) and "object_key" not in blobs
