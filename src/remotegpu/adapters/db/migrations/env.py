"""Alembic environment, driven from ``remotegpu.adapters.db.migrate`` (no alembic.ini).

The caller passes an open sync connection in ``config.attributes["connection"]``
(obtained with ``AsyncConnection.run_sync``). Without one, as from the ``alembic``
command line, we open our own async engine for ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.tables import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")

_connection = config.attributes.get("connection")
if _connection is not None:
    run_migrations(_connection)
else:
    asyncio.run(_run_with_own_engine(config.get_main_option("sqlalchemy.url")))
