"""The relational schema of identity and workspaces (SQLAlchemy Core tables).

Repositories map rows to domain dataclasses by hand; there are no ORM classes, so
nothing can lazy-load after a session closes. Migrations in ``migrations/versions``
must create exactly this schema (a unit test compares them).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Deterministic constraint names: migrations can refer to them, and SQLite batch
# migrations (which rebuild tables) need names to find constraints again.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware timestamps that always come back as UTC-aware datetimes.

    PostgreSQL has ``timestamptz``; SQLite has no time zones, so values are stored
    as naive UTC text (fixed-width, hence correctly ordered) and tagged UTC on the
    way out. Naive input is refused: guessing its zone silently corrupts data.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _id(name: str = "id", **kw) -> sa.Column:
    return sa.Column(name, sa.String(36), **kw)


def _user_fk(name: str = "user_id") -> sa.Column:
    return sa.Column(name, sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)


users = sa.Table(
    "users",
    metadata,
    _id(primary_key=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_login_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("username"),
    sa.UniqueConstraint("email"),
    sa.Index(None, "created_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(primary_key=True),
    _user_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("token_hash"),
    sa.Index(None, "user_id"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    _id(primary_key=True),
    _user_fk(),
    _id("family_id", nullable=False),
    sa.Column("token_hash", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("token_hash"),
    sa.Index(None, "user_id"),
    sa.Index(None, "family_id"),
    sa.Index(None, "expires_at"),  # the periodic purge
)

ssh_keys = sa.Table(
    "ssh_keys",
    metadata,
    _id(primary_key=True),
    _user_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_type", sa.String(64), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("comment", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Leading user_id also serves list_for_user.
    sa.UniqueConstraint("user_id", "fingerprint"),
)

invites = sa.Table(
    "invites",
    metadata,
    _id(primary_key=True),
    sa.Column("code_hash", sa.String(128), nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    _id("used_by", nullable=True),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("code_hash"),
)

# No foreign keys: the audit trail must outlive the users and objects it mentions.
audit_events = sa.Table(
    "audit_events",
    metadata,
    _id(primary_key=True),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    _id("actor_id", nullable=True),
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index(None, "created_at"),
    sa.Index(None, "action"),
    sa.Index(None, "actor_id"),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("is_personal", sa.Boolean, nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("slug"),
    sa.Index(None, "created_at"),
)

workspace_members = sa.Table(
    "workspace_members",
    metadata,
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "user_id"),  # list_for_user; the PK covers lookups by workspace
)

# One row per workspace with limits; no row means unlimited. NULL column = no limit.
workspace_quotas = sa.Table(
    "workspace_quotas",
    metadata,
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("max_gpus", sa.Integer, nullable=True),
    sa.Column("max_environments", sa.Integer, nullable=True),
    sa.Column("max_cpu_cores", sa.Integer, nullable=True),
    sa.Column("max_memory_gib", sa.Integer, nullable=True),
    sa.Column("max_storage_gib", sa.Integer, nullable=True),
)
