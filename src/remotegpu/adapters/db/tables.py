"""The relational schema: identity, workspaces, fleet, environments (SQLAlchemy Core tables).

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
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),  # 0007
    sa.Column("auth_source", sa.String(32), nullable=False, server_default="local"),  # 0031
    sa.Column("external_id", sa.String(512), nullable=True),  # 0031
    sa.Index("ix_users_external_identity", "auth_source", "external_id"),  # 0031
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

# Stays in environments through the SSH gateway (application/environments/ssh_gateway.py).
# No foreign keys, like the audit trail: records outlive users and environments.
ssh_sessions = sa.Table(
    "ssh_sessions",
    metadata,
    _id(primary_key=True),
    _id("user_id", nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    _id("environment_id", nullable=False),
    _id("workspace_id", nullable=False),
    sa.Column("environment_name", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("client_address", sa.String(64), nullable=False),
    sa.Column("key_fingerprint", sa.String(128), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("end_reason", sa.String(32), nullable=False),
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("recording", sa.String(255), nullable=True),  # object key of the asciicast, when recorded
    sa.Index(None, "started_at"),
    sa.Index(None, "workspace_id", "started_at"),
    sa.Index(None, "environment_id"),
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

# One row per workspace with limits; no row means the configured default. NULL column = no limit.
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

# Offers of a role in a workspace; only the invitee's acceptance creates the membership.
# Answered ones stay (status accepted/declined/revoked) as the record of consent.
workspace_invitations = sa.Table(
    "workspace_invitations",
    metadata,
    _id(primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),  # the invitee
    sa.Column("role", sa.String(16), nullable=False),
    _id("invited_by", nullable=False),  # no foreign key: the record outlives the inviter's account
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("responded_at", UTCDateTime, nullable=True),
    sa.Index(None, "workspace_id"),
    sa.Index(None, "user_id"),
)

# A user's own cap over all the workspaces they own; no row means the configured default.
user_quotas = sa.Table(
    "user_quotas",
    metadata,
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("max_gpus", sa.Integer, nullable=True),
    sa.Column("max_environments", sa.Integer, nullable=True),
    sa.Column("max_cpu_cores", sa.Integer, nullable=True),
    sa.Column("max_memory_gib", sa.Integer, nullable=True),
    sa.Column("max_storage_gib", sa.Integer, nullable=True),
    sa.Column("max_workspaces", sa.Integer, nullable=True),
)


# --- fleet ------------------------------------------------------------------------------

hosts = sa.Table(
    "hosts",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # offline while silent, else admin_status
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    sa.Column("disk_gib", sa.Integer, nullable=False),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("private_address", sa.String(255), nullable=False, server_default=""),  # 0003
    # The admin's cordon / drain / uncordon (ready | cordoned | draining), kept while offline.
    sa.Column("admin_status", sa.String(16), nullable=False, server_default="ready"),  # 0004
    sa.Column("last_heartbeat_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=True),
    # NULL until issued / after use; UNIQUE ignores NULLs on both dialects.
    sa.Column("join_token_hash", sa.String(128), nullable=True),
    sa.Column("agent_token_hash", sa.String(128), nullable=True),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("runtime_healthy", sa.Boolean, nullable=False),
    sa.Column("fake_gpus", sa.Boolean, nullable=False),
    sa.Column("gpu_utilization", sa.JSON, nullable=False),  # GPU uuid -> percent
    sa.Column("port_range_start", sa.Integer, nullable=False),
    sa.Column("port_range_end", sa.Integer, nullable=False),
    # The admin let this host's agent report loopback addresses (domain/fleet/addresses.py).
    sa.Column("allow_loopback", sa.Boolean, nullable=False, server_default=sa.false()),  # 0011
    # GPUs its agent reported that another host owns: uuid -> owner host id (not scheduled).
    sa.Column("gpu_conflicts", sa.JSON, nullable=False, server_default="{}"),  # 0011
    # What the agent holds in quarantine: [{"env_id", "host_id", "since"}] (see AgentService).
    sa.Column("quarantined", sa.JSON, nullable=False, server_default="[]"),  # 0010
    # Admin-set overcommit: scheduling counts requests against capacity x ratio.
    sa.Column("cpu_overcommit", sa.Float, nullable=False, server_default="1.0"),  # 0014
    sa.Column("memory_overcommit", sa.Float, nullable=False, server_default="1.0"),  # 0014
    # A Kubernetes host's cluster nodes, as its agent reports them (adapters/fleet/wire.py's shape).
    sa.Column("cluster_nodes", sa.JSON, nullable=False, server_default="[]"),  # 0037
    sa.UniqueConstraint("name"),
    sa.UniqueConstraint("join_token_hash"),
    sa.UniqueConstraint("agent_token_hash"),
)

# A host's inventory; replaced as a whole on every update. The PK's leading host_id
# serves lookups by host. A UUID names one physical GPU, so it is unique fleet-wide.
host_gpus = sa.Table(
    "host_gpus",
    metadata,
    sa.Column("host_id", sa.String(36), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uuid", sa.String(128), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("memory_mib", sa.Integer, nullable=False),
    sa.Column("numa_node", sa.Integer, nullable=True),
    sa.Column("nvlink_group", sa.Integer, nullable=True),
    sa.Column("healthy", sa.Boolean, nullable=False),
    sa.UniqueConstraint("uuid"),
)

# --- environments -------------------------------------------------------------------------

# No foreign keys to workspaces, users or hosts: deleted environments stay for
# history, after their host may be gone (like the audit trail).
environments = sa.Table(
    "environments",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    _id("workspace_id", nullable=False),
    _id("owner_id", nullable=False),
    sa.Column("image", sa.String(500), nullable=False),
    sa.Column("gpu_count", sa.Integer, nullable=False),
    sa.Column("gpu_model", sa.String(200), nullable=True),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    # Size of its disk, counted against the workspace's storage quota until deleted.
    sa.Column("disk_gib", sa.Integer, nullable=False, server_default="50"),  # 0005
    # Its SSH keys, made by the server (application/environments/credentials.py): the host
    # key's public half (known_hosts, the SSH bridge), the web terminal's client key's
    # public half, and both private halves sealed under the server's secret.
    sa.Column("ssh_host_key", sa.String(1024), nullable=False, server_default=""),  # 0006
    sa.Column("ssh_host_key_sealed", sa.Text, nullable=False, server_default=""),  # 0012
    sa.Column("ssh_client_key", sa.String(1024), nullable=False, server_default=""),  # 0012
    sa.Column("ssh_client_key_sealed", sa.Text, nullable=False, server_default=""),  # 0012
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("desired", sa.String(16), nullable=False),
    sa.Column("env", sa.JSON, nullable=False),
    # Secret variables: name → value sealed by the SecretSealer (never plaintext here).
    sa.Column("secret_env", sa.JSON, nullable=False, server_default="{}"),  # 0009
    _id("host_id", nullable=True),
    sa.Column("with_gpu", sa.Boolean, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("stop_after_minutes", sa.Integer, nullable=True),
    sa.Column("idle_stop_minutes", sa.Integer, nullable=True),
    sa.Column("idle_gpu_threshold", sa.Integer, nullable=False),
    sa.Column("idle_since", UTCDateTime, nullable=True),
    sa.Column("last_activity_at", UTCDateTime, nullable=True),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("jupyter_token", sa.String(255), nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False),
    # The GPUs it held when it last stopped, preferred when it starts again.
    sa.Column("last_gpu_uuids", sa.JSON, nullable=False, server_default="[]"),  # 0010
    sa.Column("data_mounts", sa.JSON, nullable=False, server_default="[]"),  # 0018: dataset/model mounts
    # 0038: when the auto-stop sweep must next look at it (Environment.autostop_due_at),
    # kept by the repository on every write: a sweep reads only the rows that can be due.
    sa.Column("autostop_due_at", UTCDateTime, nullable=True),
    sa.Index(None, "workspace_id"),
    sa.Index(None, "host_id"),
    sa.Index(None, "status"),
    sa.Index(None, "autostop_due_at"),
)

# The status timeline. ``seq`` numbers one environment's events in the order they
# were appended, so events of one use case (same ``at``) keep their order.
environment_events = sa.Table(
    "environment_events",
    metadata,
    _id(primary_key=True),
    sa.Column("environment_id", sa.String(36), sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index(None, "environment_id", "at"),
)

# Live allocations only: releasing deletes the rows. Host ports are held for the
# environment's life (also while stopped: users keep their ~/.ssh/config), GPUs only
# while it runs. The unique constraints are the
# last line of defence against double allocation (placement also holds the
# scheduling lock). The PKs' leading environment_id serves gpus_of / ports_of / release.
gpu_allocations = sa.Table(
    "gpu_allocations",
    metadata,
    sa.Column("environment_id", sa.String(36), sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("gpu_uuid", sa.String(128), primary_key=True),
    _id("host_id", nullable=False),
    sa.UniqueConstraint("gpu_uuid"),  # a GPU is held by at most one live environment
)

host_ports = sa.Table(
    "host_ports",
    metadata,
    sa.Column("environment_id", sa.String(36), sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("host_id", sa.String(36), primary_key=True),
    sa.Column("port", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.UniqueConstraint("host_id", "port"),  # also serves ports_on_host
)

# --- notifications (application/notifications) ------------------------------------
# One row per recipient; in_inbox false = email only (the user turned in-app off).
notifications = sa.Table(
    "notifications",
    metadata,
    _id(primary_key=True),
    _user_fk(),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("category", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("link", sa.String(500), nullable=True),
    sa.Column("in_inbox", sa.Boolean, nullable=False),
    sa.Column("dedupe_key", sa.String(200), nullable=False),  # event × recipient: never told twice
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("read_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("dedupe_key"),
    sa.Index(None, "user_id", "created_at"),
)

# One row per notification × channel; status pending → sending → sent | failed | unknown.
notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    _id(primary_key=True),
    sa.Column("notification_id", sa.String(36), sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("idempotency_key"),
    sa.Index(None, "notification_id"),
    sa.Index(None, "status", "not_before"),
)

# No row = defaults (English, UTC, no quiet hours, everything on).
notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("locale", sa.String(16), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("quiet_start", sa.String(5), nullable=True),  # "HH:MM" in the user's time zone
    sa.Column("quiet_end", sa.String(5), nullable=True),
    sa.Column("disabled", sa.JSON, nullable=False),  # ["environment/email", ...]
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sms", sa.JSON, nullable=True),  # categories also sent by SMS (opt-in); NULL = none
    sa.Column("digest", sa.JSON, nullable=True),  # {"categories": [...], "period": "daily"}; NULL = no digest
)


# --- webhooks ---------------------------------------------------------------------------

# A workspace's webhook endpoints. Secrets are sealed under the server's secret; the
# previous one keeps signing until previous_secret_expires_at after a rotation.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    _id(primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("event_types", sa.Text, nullable=False),  # JSON list; [] = every type
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(200), nullable=False),
    sa.Column("secret_sealed", sa.Text, nullable=False),
    sa.Column("previous_secret_sealed", sa.Text, nullable=False),
    sa.Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    sa.Column("failing_since", UTCDateTime, nullable=True),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "workspace_id"),
)

# One message to one endpoint, with its retry state and the outcome of its last attempt.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    _id(primary_key=True),
    sa.Column("endpoint_id", sa.String(36), sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    _id("workspace_id", nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_attempt_at", UTCDateTime, nullable=True),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_body", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Index(None, "status", "next_attempt_at"),  # the dispatcher's "due" query
    sa.Index(None, "endpoint_id", "created_at"),  # the delivery log
)


# --- storage (datasets and models) --------------------------------------------------------

# A dataset or a model of a workspace. tags: JSON {name: version number}; model: JSON
# metadata of models (framework, format, task, base model, metrics), null for datasets.
storage_repositories = sa.Table(
    "storage_repositories",
    metadata,
    _id(primary_key=True),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False),
    sa.Column("visibility", sa.String(16), nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=True),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("workspace_id", "kind", "name"),
    sa.Index(None, "visibility"),
)

# An immutable version: its manifest is the rows of storage_version_files.
storage_versions = sa.Table(
    "storage_versions",
    metadata,
    sa.Column("repository_id", sa.String(36), sa.ForeignKey("storage_repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("message", sa.String(2000), nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Provenance (0024): the environment or training job that made it; null: a person uploaded it.
    sa.Column("source_kind", sa.String(16), nullable=True),
    sa.Column("source_id", sa.String(36), nullable=True),
)

storage_version_files = sa.Table(
    "storage_version_files",
    metadata,
    sa.Column("repository_id", sa.String(36), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.ForeignKeyConstraint(["repository_id", "number"], ["storage_versions.repository_id", "storage_versions.number"],
                            ondelete="CASCADE"),
    sa.Index(None, "sha256"),  # garbage collection: is a blob still referenced?
)

# Content-addressed bytes, stored once (object key: object_key, or blobs/sha256/<ab>/<sha256> when null).
storage_blobs = sa.Table(
    "storage_blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("object_key", sa.String(600), nullable=True),  # 0024
)

# A workspace's shared disk (0024): one read-write volume per host, at /root/shared.
workspace_shared_disks = sa.Table(
    "workspace_shared_disks",
    metadata,
    sa.Column("workspace_id", sa.String(36), primary_key=True),
    sa.Column("size_gib", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# An upload in progress: the manifest it will commit and the blobs it still brings (JSON).
storage_uploads = sa.Table(
    "storage_uploads",
    metadata,
    _id(primary_key=True),
    sa.Column("repository_id", sa.String(36), sa.ForeignKey("storage_repositories.id", ondelete="CASCADE"), nullable=False),
    _id("workspace_id", nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("part_size", sa.BigInteger, nullable=False),
    sa.Column("message", sa.String(2000), nullable=False),
    sa.Column("tag", sa.String(64), nullable=True),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("pending", sa.Text, nullable=False),
    sa.Column("source_kind", sa.String(16), nullable=True),  # 0024: given to the version at commit
    sa.Column("source_id", sa.String(36), nullable=True),
    sa.Index(None, "updated_at"),
)

# Parts received of an open upload's blobs (number 0: the blob is verified). A row each,
# so that parts sent in parallel never overwrite each other's record.
storage_upload_parts = sa.Table(
    "storage_upload_parts",
    metadata,
    sa.Column("upload_id", sa.String(36), sa.ForeignKey("storage_uploads.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("etag", sa.String(200), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

# Blobs an open upload will reference at commit: garbage collection leaves them alone.
storage_upload_blobs = sa.Table(
    "storage_upload_blobs",
    metadata,
    sa.Column("upload_id", sa.String(36), sa.ForeignKey("storage_uploads.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Index(None, "sha256"),
)

# --- support (tickets) -------------------------------------------------------------------

# A support ticket. version: optimistic concurrency (every save checks and bumps it).
support_tickets = sa.Table(
    "support_tickets",
    metadata,
    _id(primary_key=True),
    _user_fk("requester_id"),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    _id("workspace_id", nullable=True),  # no FK: a ticket outlives the workspace it was about
    _id("environment_id", nullable=True),
    _id("assignee_id", nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("first_response_at", UTCDateTime, nullable=True),
    sa.Column("solved_at", UTCDateTime, nullable=True),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("pending_since", UTCDateTime, nullable=True),
    sa.Column("reminded_at", UTCDateTime, nullable=True),
    sa.Column("sla_elapsed", sa.Float, nullable=False),
    sa.Column("sla_running_since", UTCDateTime, nullable=True),
    sa.Column("sla_alerts", sa.Text, nullable=False),  # JSON list
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index(None, "requester_id", "updated_at"),
    sa.Index(None, "status", "updated_at"),
)

# Public replies and internal notes (public = false: support staff only).
support_comments = sa.Table(
    "support_comments",
    metadata,
    _id(primary_key=True),
    sa.Column("ticket_id", sa.String(36), sa.ForeignKey("support_tickets.id", ondelete="CASCADE"), nullable=False),
    _id("author_id", nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("public", sa.Boolean, nullable=False),
    sa.Column("by_staff", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "ticket_id", "created_at"),
)

# Files attached to a ticket or one of its comments; the bytes are in the object store
# (support/tickets/<ticket id>/<id>). public = false: on an internal note (staff only).
support_attachments = sa.Table(
    "support_attachments",
    metadata,
    _id(primary_key=True),
    sa.Column("ticket_id", sa.String(36), sa.ForeignKey("support_tickets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("comment_id", sa.String(36), nullable=True),
    _id("uploader_id", nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("public", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "ticket_id"),
)

# The support team besides platform admins (the "support" role).
support_agents = sa.Table(
    "support_agents",
    metadata,
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    _id("added_by", nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
)

# --- SMS (notifications) -------------------------------------------------------------------

# A user's phone: the verified number SMS goes to, and one being verified (code as an HMAC).
user_phones = sa.Table(
    "user_phones",
    metadata,
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.String(16), nullable=True),
    sa.Column("verified_at", UTCDateTime, nullable=True),
    sa.Column("pending_number", sa.String(16), nullable=True),
    sa.Column("code_hash", sa.String(64), nullable=True),
    sa.Column("code_expires_at", UTCDateTime, nullable=True),
    sa.Column("code_attempts", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=True),
)

# Every SMS asked of the provider (also "user:<id>" for codes a user requested): the per-number limits.
sms_sends = sa.Table(
    "sms_sends",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(64), nullable=False),
    sa.Column("template", sa.String(32), nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Index(None, "number", "template", "sent_at"),
)


# --- billing (domain/billing; money is integer minor units) ------------------------------

# Effective-dated prices: unit_price minor units per unit per period (hour; disk: day).
billing_prices = sa.Table(
    "billing_prices",
    metadata,
    _id(primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("effective_from", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "kind", "model", "effective_from"),
)

# Observed environment states, written in the transaction of each status change. A
# metered subject is an environment or a training-job node (``<job>.a<n>.n<rank>``: 64
# characters, migration 0034).
meter_readings = sa.Table(
    "meter_readings",
    metadata,
    _id(primary_key=True),
    sa.Column("environment_id", sa.String(64), nullable=False),
    _id("workspace_id", nullable=False),
    _id("owner_id", nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),  # order of readings of one instant (recording time, µs × 1000 + index)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("gpu_model", sa.String(200), nullable=False),
    sa.Column("gpu_count", sa.Integer, nullable=False),
    sa.Column("with_gpu", sa.Boolean, nullable=False),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    sa.Column("disk_gib", sa.Integer, nullable=False),
    sa.Index(None, "environment_id", "at"),
)

# One row per metered environment: version grows with each reading; metered_version is
# the version the last metering pass saw (less: it must be metered again).
meters = sa.Table(
    "meters",
    metadata,
    sa.Column("environment_id", sa.String(64), primary_key=True),
    _id("workspace_id", nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("metered_version", sa.Integer, nullable=False),
    sa.Column("open_segments", sa.Integer, nullable=False),
    sa.Index(None, "version", "metered_version"),
)

# Usage segments, upserted by their deterministic key; amount is rated to rated_until
# (end_at once closed); charged is what the ledger has been charged for it so far.
usage_segments = sa.Table(
    "usage_segments",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("environment_id", sa.String(64), nullable=False),
    _id("workspace_id", nullable=False),
    _id("owner_id", nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("start_at", UTCDateTime, nullable=False),
    sa.Column("end_at", UTCDateTime, nullable=True),
    sa.Column("price_id", sa.String(64), nullable=True),  # a price id, or "plan:<id>" (covered by a plan)
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("period", sa.String(7), nullable=False),  # "YYYY-MM" of start_at (segments never cross a month)
    sa.Column("rated_until", UTCDateTime, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("charged", sa.BigInteger, nullable=False),
    sa.Index(None, "workspace_id", "period"),
    sa.Index(None, "environment_id"),
)

# The wallet's append-only ledger; the balance is the sum of amount.
ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    _id(primary_key=True),
    _id("workspace_id", nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("actor_id", sa.String(36), nullable=True),
    sa.Column("reference", sa.String(300), nullable=True, unique=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Index(None, "workspace_id", "at"),
)

# Per-workspace wallet settings and arrears state (no row = defaults).
wallets = sa.Table(
    "wallets",
    metadata,
    _id("workspace_id", primary_key=True),
    sa.Column("warn_below", sa.BigInteger, nullable=False),
    sa.Column("warned", sa.Boolean, nullable=False),
    sa.Column("arrears_since", UTCDateTime, nullable=True),
    sa.Column("disk_warnings", sa.Integer, nullable=False),
    sa.Column("budget_monthly", sa.BigInteger, nullable=True),
    sa.Column("budget_hard_stop", sa.Boolean, nullable=False),
    sa.Column("budget_notified", sa.String(16), nullable=False),  # "YYYY-MM:pct" of the last budget notice
)

# Finalized monthly bills: immutable once written (corrections go on the next month).
bills = sa.Table(
    "bills",
    metadata,
    _id("workspace_id", primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("lines", sa.Text, nullable=False),  # JSON line items
    sa.Column("finalized_at", UTCDateTime, nullable=False),
)

# Plans (包月/包年): N GPUs of a model reserved for a workspace, prepaid per term.
billing_plans = sa.Table(
    "billing_plans",
    metadata,
    _id(primary_key=True),
    _id("workspace_id", nullable=False),
    sa.Column("gpu_model", sa.String(200), nullable=False),
    sa.Column("gpu_count", sa.Integer, nullable=False),
    sa.Column("term", sa.String(8), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("term_started_at", UTCDateTime, nullable=False),
    sa.Column("auto_renew", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(36), nullable=False),
    sa.Column("terms", sa.Integer, nullable=False),
    sa.Index(None, "workspace_id"),
)

# --- monitoring (adapters/monitoring/sql_store.py, sql_alerts.py) ----------------------
# A series: what one metric of one host/environment/GPU is; "" = not applicable
# (env_id, workspace_id, gpu_uuid). Raw points refer to it by number, so a raw row is
# three numbers (series, ts, value) with one index to keep: ingestion's cost (issue 18).
metric_series = sa.Table(
    "metric_series",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("host_id", sa.String(36), nullable=False),
    sa.Column("env_id", sa.String(36), nullable=False),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("gpu_uuid", sa.String(64), nullable=False),
    sa.UniqueConstraint("metric", "host_id", "env_id", "gpu_uuid"),
    sa.Index(None, "env_id", "metric"),
    sa.Index(None, "host_id", "metric"),
    sa.Index(None, "workspace_id", "metric"),
)

# Raw samples: ts in epoch seconds. No foreign key (a COPY per batch, nothing checked per row).
metric_points = sa.Table(
    "metric_points",
    metadata,
    sa.Column("series_id", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float(precision=53), nullable=False),
    sa.Column("value", sa.Float(precision=53), nullable=False),
    sa.Index(None, "series_id", "ts"),
    sa.Index(None, "ts"),
)

# Buckets already rolled up that a late sample fell into: compaction recomputes them.
metric_late_buckets = sa.Table(
    "metric_late_buckets",
    metadata,
    sa.Column("resolution", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
)

# Aggregates of the raw samples per series and bucket (resolution 60 or 3600 s).
metric_rollups = sa.Table(
    "metric_rollups",
    metadata,
    sa.Column("resolution", sa.Integer, primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("host_id", sa.String(36), primary_key=True),
    sa.Column("env_id", sa.String(36), primary_key=True),
    sa.Column("gpu_uuid", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("workspace_id", sa.String(36), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("sum", sa.Float(precision=53), nullable=False),
    sa.Column("min", sa.Float(precision=53), nullable=False),
    sa.Column("max", sa.Float(precision=53), nullable=False),
    # The values too (PostgreSQL INCLUDE, migration 0039): one environment's chart is an index-only scan.
    sa.Index(None, "resolution", "env_id", "metric", "bucket",
             postgresql_include=["host_id", "gpu_uuid", "workspace_id", "count", "sum", "min", "max"]),
    sa.Index(None, "resolution", "workspace_id", "metric", "bucket"),
    sa.Index(None, "resolution", "bucket"),
)

# Up to where (epoch seconds, exclusive) each resolution has been rolled up.
metric_compaction = sa.Table(
    "metric_compaction",
    metadata,
    sa.Column("resolution", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("done_until", sa.BigInteger, nullable=False),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("op", sa.String(2), nullable=False),
    sa.Column("threshold", sa.Float(precision=53), nullable=False),
    sa.Column("for_seconds", sa.Integer, nullable=False),
    sa.Column("keep_firing_for_seconds", sa.Integer, nullable=False),
    sa.Column("env_id", sa.String(36), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "workspace_id"),
)

# One row per episode of one series of one rule (pending → firing → resolved). While
# open, open_key is the series' fingerprint, so (rule_id, open_key) lets only one
# replica open it; resolved, it becomes the row's id. version: optimistic updates.
alerts = sa.Table(
    "alerts",
    metadata,
    _id(primary_key=True),
    sa.Column("rule_id", sa.String(36), sa.ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workspace_id", sa.String(36), nullable=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("open_key", sa.String(36), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pending_since", sa.Float(precision=53), nullable=False),
    sa.Column("last_breach_at", sa.Float(precision=53), nullable=False),
    sa.Column("fired_at", sa.Float(precision=53), nullable=True),
    sa.Column("resolved_at", sa.Float(precision=53), nullable=True),
    sa.Column("value", sa.Float(precision=53), nullable=True),
    sa.Column("silenced", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.UniqueConstraint("rule_id", "open_key"),
    sa.Index(None, "status"),
    sa.Index(None, "workspace_id", "pending_since"),
)

alert_silences = sa.Table(
    "alert_silences",
    metadata,
    _id(primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True),
    sa.Column("rule_id", sa.String(36), nullable=False),
    sa.Column("matchers", sa.Text, nullable=False),
    sa.Column("comment", sa.String(500), nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "workspace_id"),
)

# 0023: one counter moved (by triggers, in the same transaction) by every committed change
# to what the cached hot reads show: see application/shared/read_cache.py.
change_epoch = sa.Table(
    "change_epoch",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
)


# --- images -----------------------------------------------------------------------------

# The image catalog: platform images (workspace_id NULL) and workspace images.
catalog_images = sa.Table(
    "catalog_images",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("reference", sa.String(300), nullable=False, unique=True),
    sa.Column("visibility", sa.String(16), nullable=False),
    sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True),
    _id("created_by", nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("digest", sa.String(100), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("layers", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON object of strings
    sa.Column("preload", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Index(None, "workspace_id"),
)

# Saves and builds, run by a host's agent.
image_jobs = sa.Table(
    "image_jobs",
    metadata,
    _id(primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("image_id", sa.String(36), sa.ForeignKey("catalog_images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workspace_id", sa.String(36), nullable=True),
    _id("created_by", nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("host_id", sa.String(36), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("env_id", sa.String(36), nullable=True),
    sa.Column("dockerfile", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("base_reference", sa.String(300), nullable=False),
    sa.Column("timeout_seconds", sa.Integer, nullable=False),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    sa.Column("log", sa.Text, nullable=False),
    sa.Column("log_dropped", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("progress", sa.String(300), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Index(None, "host_id", "status"),
    sa.Index(None, "image_id"),
)

# Which catalog images each host has (its agent's report): placement prefers those hosts.
host_images = sa.Table(
    "host_images",
    metadata,
    sa.Column("host_id", sa.String(36), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("reference", sa.String(300), primary_key=True),
    sa.Index(None, "reference"),
)


# --- workloads (application/workloads) ----------------------------------------------
# One row per training job; its nodes (host, GPUs, state) are JSON inside: they are
# read and written with the job, and the scheduler reads the live ones (starting /
# running) to build its fleet snapshot. No foreign keys (history outlives hosts).
training_jobs = sa.Table(
    "training_jobs",
    metadata,
    _id(primary_key=True),
    _id("workspace_id", nullable=False),
    _id("owner_id", nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("image", sa.String(500), nullable=False),
    sa.Column("command", sa.JSON, nullable=False),
    sa.Column("env", sa.JSON, nullable=False),
    sa.Column("gpus_per_node", sa.Integer, nullable=False),
    sa.Column("gpu_model", sa.String(200), nullable=True),
    sa.Column("nodes", sa.Integer, nullable=False),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    sa.Column("time_limit_minutes", sa.Integer, nullable=True),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=True),
    sa.Column("queued_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("node_states", sa.JSON, nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("exit_codes", sa.JSON, nullable=False),
    sa.Column("history", sa.JSON, nullable=False),
    sa.Column("data_mounts", sa.JSON, nullable=False, server_default="[]"),  # migration 0028
    sa.Column("output", sa.JSON, nullable=True),  # migration 0034: the directory that becomes a version
    sa.Index(None, "workspace_id"),
    sa.Index(None, "status"),
)

# Inference services: the indexed columns, the rest (settings, replicas, token hashes) in
# ``data`` (see adapters/db/repositories/workloads.py).
inference_services = sa.Table(
    "inference_services",
    metadata,
    _id(primary_key=True),
    _id("workspace_id", nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index(None, "workspace_id"),
    sa.Index(None, "status"),
)
