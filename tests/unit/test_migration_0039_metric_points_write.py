"""Migration 0039 on PostgreSQL: ``metric_points_write`` stores a batch and marks the
rolled-up buckets it falls in (exactly what the statements did), the env rollup index
carries the values; the downgrade takes both back. In a private schema, dropped after."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_engine
from tests.support.components import postgres_url

INDEX = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_metric_rollups_resolution_env_id_metric_bucket' AND schemaname = :s"
FUNCTION = "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE proname = 'metric_points_write' AND nspname = :s"


async def test_batch_function_and_covering_index_up_and_down():
    url = postgres_url()
    schema = f"m0039_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await upgrade_engine(engine, "0024")
        await upgrade_engine(engine, "0039")
        async with engine.begin() as conn:
            assert "INCLUDE (host_id, gpu_uuid, workspace_id, count, sum, min, max)" in (
                await conn.execute(text(INDEX), {"s": schema})).scalar_one()
            # Minutes rolled up to 1200 s, 10 minutes to 600 s, hours not at all.
            await conn.execute(text("INSERT INTO metric_compaction VALUES (60, 1200), (600, 600), (3600, 0)"))
            marked = (await conn.execute(text(
                "SELECT metric_points_write(ARRAY[1, 1, 2], ARRAY[550.5, 1199.0, 1300.0], ARRAY[1.5, 2.5, 3.5], "
                "ARRAY[550.5, 1199.0, 1300.0])"))).scalar_one()
            points = (await conn.execute(text("SELECT series_id, ts, value FROM metric_points ORDER BY ts"))).all()
            late = (await conn.execute(text("SELECT resolution, bucket FROM metric_late_buckets ORDER BY 1, 2"))).all()
        assert [tuple(p) for p in points] == [(1, 550.5, 1.5), (1, 1199.0, 2.5), (2, 1300.0, 3.5)]
        # 550.5 and 1199 are under the minute watermark (buckets 540, 1140), 550.5 under the 10-minute one (0).
        assert [tuple(r) for r in late] == [(60, 540), (60, 1140), (600, 0)] and marked == 3

        def downgrade(connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.begin() as conn:
            assert (await conn.execute(text(FUNCTION), {"s": schema})).scalar_one() == 0
            assert "INCLUDE" not in (await conn.execute(text(INDEX), {"s": schema})).scalar_one()
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()
        await engine.dispose()
