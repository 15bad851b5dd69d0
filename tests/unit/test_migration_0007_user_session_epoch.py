"""Migration 0007 on existing rows: users created before session epochs get epoch 0,
the epoch every access token issued so far implicitly carries (they keep working)."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade


async def test_existing_users_get_epoch_0(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0006",
        "INSERT INTO users (id, username, email, password_hash, display_name, is_active, is_admin, created_at)"
        " VALUES ('u1', 'old', 'old@example.com', 'x', '', 1, 0, '2026-01-01 00:00:00')",
        "SELECT id, session_epoch FROM users",
    )
    assert rows == [("u1", 0)]
