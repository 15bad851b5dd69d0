"""Bring a database schema up to date with the Alembic migrations shipped in the package.

``upgrade(url)`` is synchronous and runs its own event loop with ``asyncio.run``:
call it at start-up before the server's loop starts, from a CLI command, or from
a worker thread while another thread runs a loop. From inside a running loop,
``await upgrade_async(url)`` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from remotegpu.adapters.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation treats "%" specially (URL-encoded passwords have it).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate ``database_url`` (sqlite+aiosqlite or postgresql+asyncpg) to ``revision``."""
    asyncio.run(upgrade_async(database_url, revision))


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate through an existing engine (keeps its connect options, e.g. a search_path)."""
    url = engine.url.render_as_string(hide_password=False)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, alembic_config(url), revision)


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
