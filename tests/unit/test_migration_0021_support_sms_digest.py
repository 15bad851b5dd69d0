"""Migration 0021: existing notification preferences keep working (no SMS, no digest),
and the downgrade drops the support and SMS tables and the new preference columns."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async


async def test_existing_preferences_have_no_sms_and_no_digest(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0016")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # The user the preferences belong to: every NOT NULL column without a default gets a value.
            columns = await conn.run_sync(lambda c: [col for col in inspect(c).get_columns("users")
                                                     if not col["nullable"] and col.get("default") is None])
            values = {col["name"]: (0 if "INT" in str(col["type"]) or "BOOL" in str(col["type"]) else
                                    "2026-01-01 00:00:00" if "DATETIME" in str(col["type"]) else "u1") for col in columns}
            await conn.execute(text(f"INSERT INTO users ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"), values)
            await conn.execute(text("INSERT INTO notification_preferences (user_id, locale, timezone, disabled, updated_at)"
                                    " VALUES ('u1', 'en', 'UTC', '[]', '2026-01-01 00:00:00')"))
        await upgrade_async(url)
        async with engine.connect() as conn:
            rows = [tuple(r) for r in (await conn.execute(text("SELECT user_id, sms, digest FROM notification_preferences"))).all()]
    finally:
        await engine.dispose()
    assert rows == [("u1", None, None)]


async def test_downgrade_drops_what_it_added(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url)
    engine = create_engine(url)

    def downgrade(connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0016")

    def names(c):
        i = inspect(c)
        return set(i.get_table_names()), {col["name"] for col in i.get_columns("notification_preferences")}

    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            tables, columns = await conn.run_sync(names)
    finally:
        await engine.dispose()
    assert not tables & {"support_tickets", "support_comments", "support_agents", "user_phones", "sms_sends"}
    assert "sms" not in columns and "digest" not in columns and "disabled" in columns and "webhook_endpoints" in tables
