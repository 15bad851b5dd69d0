"""All in-memory state, shared by every InMemoryUnitOfWork built on the same store.

Tables are dicts from primary key to a private copy of a domain object. Unique
and foreign-key constraints are declared here, next to the data, so the fake
refuses exactly what the SQL schema refuses (see adapters/db/tables.py).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Hashable

from remotegpu.domain.shared.errors import Conflict

Key = Hashable
KeyFn = Callable[[Any], Hashable]


@dataclass
class TableSpec:
    unique: dict[str, KeyFn] = field(default_factory=dict)  # constraint name -> key of a row
    references: dict[str, tuple[str, KeyFn]] = field(default_factory=dict)  # name -> (parent table, parent key)


SPECS: dict[str, TableSpec] = {
    "users": TableSpec(unique={"uq_users_username": lambda u: u.username, "uq_users_email": lambda u: u.email}),
    "api_tokens": TableSpec(
        unique={"uq_api_tokens_token_hash": lambda t: t.token_hash},
        references={"fk_api_tokens_user_id_users": ("users", lambda t: t.user_id)},
    ),
    "refresh_tokens": TableSpec(
        unique={"uq_refresh_tokens_token_hash": lambda t: t.token_hash},
        references={"fk_refresh_tokens_user_id_users": ("users", lambda t: t.user_id)},
    ),
    "ssh_keys": TableSpec(
        unique={"uq_ssh_keys_user_id_fingerprint": lambda k: (k.user_id, k.fingerprint)},
        references={"fk_ssh_keys_user_id_users": ("users", lambda k: k.user_id)},
    ),
    "invites": TableSpec(unique={"uq_invites_code_hash": lambda i: i.code_hash}),
    "audit_events": TableSpec(),
    "workspaces": TableSpec(unique={"uq_workspaces_slug": lambda w: w.slug}),
    "workspace_members": TableSpec(
        references={
            "fk_workspace_members_workspace_id_workspaces": ("workspaces", lambda m: m.workspace_id),
            "fk_workspace_members_user_id_users": ("users", lambda m: m.user_id),
        }
    ),
    # Rows are (workspace_id, Quota) pairs: Quota itself carries no workspace id.
    "workspace_quotas": TableSpec(
        references={"fk_workspace_quotas_workspace_id_workspaces": ("workspaces", lambda row: row[0])},
    ),
    "workspace_invitations": TableSpec(
        references={
            "fk_workspace_invitations_workspace_id_workspaces": ("workspaces", lambda i: i.workspace_id),
            "fk_workspace_invitations_user_id_users": ("users", lambda i: i.user_id),
        }
    ),
    # Rows are (user_id, UserQuota) pairs.
    "user_quotas": TableSpec(references={"fk_user_quotas_user_id_users": ("users", lambda row: row[0])}),
    # Fleet. Hosts are stored without their GPUs; GPUs are (host_id, Gpu) rows keyed
    # (host_id, index), as in SQL. A NULL token hash is never a duplicate (SQL UNIQUE).
    "hosts": TableSpec(
        unique={
            "uq_hosts_name": lambda h: h.name,
            "uq_hosts_join_token_hash": lambda h: h.join_token_hash,
            "uq_hosts_agent_token_hash": lambda h: h.agent_token_hash,
        }
    ),
    "host_gpus": TableSpec(
        unique={"uq_host_gpus_uuid": lambda row: row[1].uuid},
        references={"fk_host_gpus_host_id_hosts": ("hosts", lambda row: row[0])},
    ),
    # Environments are stored with ``pending_events`` emptied; their events are rows
    # (seq, EnvironmentEvent) keyed by event id, ``seq`` numbering one environment's log.
    "environments": TableSpec(),
    "environment_events": TableSpec(
        references={"fk_environment_events_environment_id_environments": ("environments", lambda row: row[1].environment_id)},
    ),
    "gpu_allocations": TableSpec(
        unique={"uq_gpu_allocations_gpu_uuid": lambda a: a.gpu_uuid},
        references={"fk_gpu_allocations_environment_id_environments": ("environments", lambda a: a.environment_id)},
    ),
    "host_ports": TableSpec(
        unique={"uq_host_ports_host_id_port": lambda p: (p.host_id, p.port)},
        references={"fk_host_ports_environment_id_environments": ("environments", lambda p: p.environment_id)},
    ),
    # Training jobs (application/workloads): one row per job, its nodes inside.
    "training_jobs": TableSpec(),
    "inference_services": TableSpec(),
}


class InMemoryStore:
    """Committed state. Only a unit of work's commit writes to it."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Key, Any]] = {name: {} for name in SPECS}
        # Moved by every commit that wrote anything (the SQL schema's change_epoch, coarser).
        self.change_epoch = 0


def conflict(constraint: str) -> Conflict:
    # Same code as the SQL adapter's IntegrityError mapping.
    return Conflict("the change conflicts with existing data", code="conflict", details={"reason": constraint})


def stored_copy(obj: Any) -> Any:
    """A private deep copy with every datetime checked and normalised to UTC, as SQL does."""
    obj = copy.deepcopy(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, datetime):
                object.__setattr__(obj, f.name, _utc(value))
    return obj


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    return value.astimezone(timezone.utc)
