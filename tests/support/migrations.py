"""Run a migration over rows written by the schema before it (SQLite)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade_async


async def rows_after_upgrade(tmp_path: Path, before: str, insert: str, select: str) -> list[tuple]:
    """Migrate a fresh database to revision ``before``, run ``insert`` there, migrate to
    the head and answer ``select``'s rows."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, before)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(insert))
        await upgrade_async(url)
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(select))).all()]
    finally:
        await engine.dispose()
