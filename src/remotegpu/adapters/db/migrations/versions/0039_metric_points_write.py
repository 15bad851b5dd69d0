"""monitoring: one round trip per metric batch on PostgreSQL, and range queries of one
environment from the index alone.

``metric_points_write(series, stamps, vals, moments)`` does what a batch write did in
five statements (BEGIN, the writers' shared advisory lock, COPY, reading the rollup
watermarks, COMMIT): it takes the lock, inserts the points from three arrays and marks
every rolled-up bucket one of ``moments`` (the batch's distinct timestamps) falls in.
The function is VOLATILE and in plpgsql, so each statement in it takes a fresh snapshot:
the watermarks are read after the lock is held, as before (a compaction step, which
holds the lock exclusively, cannot commit between that read and the batch's commit).
SQLite keeps the statements (``SqlMetricsStore.write``).

``ix_metric_rollups_resolution_env_id_metric_bucket`` carries the rollup values
(``INCLUDE``): a 30-day chart of one environment is an index-only scan, not a heap
fetch per row among every other environment's rows (PostgreSQL; same key as before).

Revision ID: 0039
Revises: 0024
Create Date: 2026-11-30

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

from alembic import op

revision = "0039"
down_revision = "0032"  # chained at merge (written against 0024)
branch_labels = None
depends_on = None

#: "RGPUMETR" as a signed bigint: the key SqlMetricsStore's writers and compaction use.
_LOCK_KEY = 0x52475055_4D455452 - (1 << 63)


_ENV_INDEX = "ix_metric_rollups_resolution_env_id_metric_bucket"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(_ENV_INDEX, table_name="metric_rollups")
    op.create_index(_ENV_INDEX, "metric_rollups", ["resolution", "env_id", "metric", "bucket"],
                    postgresql_include=["host_id", "gpu_uuid", "workspace_id", "count", "sum", "min", "max"])
    op.execute(f"""
        CREATE OR REPLACE FUNCTION metric_points_write(series integer[], stamps double precision[],
                                                       vals double precision[], moments double precision[])
        RETURNS integer LANGUAGE plpgsql VOLATILE AS $fn$
        DECLARE
            marked integer;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared({_LOCK_KEY});
            INSERT INTO metric_points (series_id, ts, value) SELECT * FROM unnest(series, stamps, vals);
            INSERT INTO metric_late_buckets (resolution, bucket)
                SELECT DISTINCT c.resolution, (floor(m.t / c.resolution))::bigint * c.resolution
                FROM metric_compaction c CROSS JOIN unnest(moments) AS m(t)
                WHERE m.t < c.done_until
                ORDER BY 1, 2
                ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS marked = ROW_COUNT;
            RETURN marked;
        END
        $fn$""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(_ENV_INDEX, table_name="metric_rollups")
    op.create_index(_ENV_INDEX, "metric_rollups", ["resolution", "env_id", "metric", "bucket"])
    op.execute("DROP FUNCTION IF EXISTS metric_points_write(integer[], double precision[], double precision[], "
               "double precision[])")
