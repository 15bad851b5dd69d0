from __future__ import annotations


class SqlReadiness:
    def __init__(self, engine):
        self._engine = engine

    async def check(self) -> bool:
        from sqlalchemy import text

        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False


class AlwaysReady:
    async def check(self) -> bool:
        return True
