"""environments: validated inputs, secret variables.

* ``secret_env``: secret environment variables, name → value sealed by the server's
  SecretBox (AES-GCM; never plaintext in the database). Existing rows get ``{}``.
* Names: environment names are DNS labels from now on (they reach ``~/.ssh/config``
  blocks, host names and URLs). Existing names that are not are rewritten: lower case,
  runs of anything else become '-', trimmed to 63; a clash within the workspace gets
  ``-2``, ``-3``... Rows are taken in creation order, names already valid first, so the
  result is deterministic and unique within each workspace.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py`` nor the domain (the name rule
is copied here on purpose: a later change to the rule must not change this migration).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_VALID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_MAX = 63


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:_MAX].strip("-") or "env"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = base[: _MAX - len(suffix)].rstrip("-") + suffix
    return candidate


def rewrite_names(rows: list[tuple[str, str, str]]) -> dict[str, str]:
    """``(id, workspace_id, name)`` rows in creation order → ``{id: new name}`` for the invalid ones."""
    taken: dict[str, set[str]] = {}
    for _id, workspace_id, name in rows:
        if _VALID.fullmatch(name):
            taken.setdefault(workspace_id, set()).add(name)
    renamed = {}
    for env_id, workspace_id, name in rows:
        if _VALID.fullmatch(name):
            continue
        names = taken.setdefault(workspace_id, set())
        renamed[env_id] = _safe_name(name, names)
        names.add(renamed[env_id])
    return renamed


def upgrade() -> None:
    op.add_column("environments", sa.Column("secret_env", sa.JSON(), nullable=False, server_default="{}"))
    conn = op.get_bind()
    envs = sa.table("environments", sa.column("id", sa.String), sa.column("workspace_id", sa.String),
                    sa.column("name", sa.String), sa.column("created_at", sa.DateTime))
    rows = conn.execute(sa.select(envs.c.id, envs.c.workspace_id, envs.c.name).order_by(envs.c.created_at, envs.c.id)).all()
    for env_id, name in rewrite_names([tuple(r) for r in rows]).items():
        conn.execute(envs.update().where(envs.c.id == env_id).values(name=name))


def downgrade() -> None:
    # Renamed environments keep their new (valid) names: the old ones are not kept.
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("secret_env")
