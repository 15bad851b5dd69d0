"""Migration 0027 on existing raw samples: they become one series row per series and
one point per sample (labels intact), and the downgrade brings the 7-column rows back."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config
from tests.support.migrations import rows_after_upgrade

INSERT = ("INSERT INTO metric_samples (ts, metric, host_id, env_id, workspace_id, gpu_uuid, value) VALUES "
          "(10.5, 'DCGM_FI_DEV_GPU_UTIL', 'h1', 'e1', 'w1', 'GPU-a', 95.0), "
          "(11.5, 'DCGM_FI_DEV_GPU_UTIL', 'h1', 'e1', 'w1', 'GPU-a', 96.0), "
          "(10.5, 'remotegpu_container_cpu_percent', 'h1', 'e1', 'w1', '', 40.0)")
SELECT_POINTS = ("SELECT p.ts, s.metric, s.host_id, s.env_id, s.workspace_id, s.gpu_uuid, p.value FROM metric_points p "
                 "JOIN metric_series s ON s.id = p.series_id ORDER BY s.metric, p.ts")


async def test_raw_samples_are_carried_over_and_back(tmp_path):
    rows = await rows_after_upgrade(tmp_path, "0022", INSERT, SELECT_POINTS)
    expected = [(10.5, "DCGM_FI_DEV_GPU_UTIL", "h1", "e1", "w1", "GPU-a", 95.0),
                (11.5, "DCGM_FI_DEV_GPU_UTIL", "h1", "e1", "w1", "GPU-a", 96.0),
                (10.5, "remotegpu_container_cpu_percent", "h1", "e1", "w1", "", 40.0)]
    assert rows == expected
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(url)

    def downgrade(connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0022")

    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM metric_series"))).scalar() == 2
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            back = [tuple(r) for r in (await conn.execute(text(
                "SELECT ts, metric, host_id, env_id, workspace_id, gpu_uuid, value FROM metric_samples ORDER BY metric, ts"))).all()]
    finally:
        await engine.dispose()
    assert back == expected
