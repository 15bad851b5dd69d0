"""PostgreSQL helpers for tests and benchmarks that run a server on a shared database."""

from __future__ import annotations

import asyncio


def reset_schema(url: str) -> None:
    """Drop everything in the database's public schema: the next server migrates afresh."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(run())
