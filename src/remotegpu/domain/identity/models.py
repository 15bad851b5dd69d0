"""Identity: users, personal API tokens, refresh-token families, SSH keys, audit events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import InvalidInput

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
MIN_PASSWORD_LENGTH = 8


class RegistrationPolicy(str, Enum):
    OPEN = "open"
    INVITE_ONLY = "invite_only"
    CLOSED = "closed"


def normalize_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.match(name):
        raise InvalidInput(
            "username must be 3-32 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
            details={"field": "username"},
        )
    return name


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    local, sep, domain = value.partition("@")
    if not sep or not local or "." not in domain or " " in value or len(value) > 254:
        raise InvalidInput("email is not a valid address", details={"field": "email"})
    return value


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", details={"field": "password"}
        )
    if len(password) > 1024:
        raise InvalidInput("password is too long", details={"field": "password"})


@dataclass
class User:
    id: str
    username: str
    email: str
    password_hash: str
    created_at: datetime
    display_name: str = ""
    is_active: bool = True
    is_admin: bool = False
    last_login_at: datetime | None = None
    # Access tokens carry the epoch they were issued under; raising it (password
    # change, disable, "sign out everywhere") makes every earlier one stop working at once.
    session_epoch: int = 0
    # Where the password is checked: "local" (password_hash) or "ldap" (a bind against
    # the directory; password_hash stays empty, so no local password ever works).
    auth_source: str = "local"
    external_id: str | None = None  # the directory's DN, the identity provider's subject

    def end_sessions(self) -> None:
        self.session_epoch += 1


@dataclass
class ApiToken:
    """A personal API token. Only its hash is stored; the secret is shown once."""

    id: str
    user_id: str
    name: str
    token_hash: str
    prefix: str  # first characters of the secret, so a user can tell tokens apart
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass
class RefreshToken:
    """One link of a rotating refresh-token chain.

    Every use rotates it: the presented token becomes ``used`` and a new one of the
    same ``family_id`` is issued. Presenting a used token again means it was stolen
    (or replayed), so the whole family is revoked.
    """

    id: str
    user_id: str
    family_id: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass
class SshKey:
    id: str
    user_id: str
    name: str
    key_type: str
    public_key: str  # normalised "type base64" without the comment
    fingerprint: str  # SHA256:... as ssh-keygen -l prints it
    created_at: datetime
    comment: str = ""


@dataclass
class Invite:
    """A one-time registration code for the invite-only policy."""

    id: str
    code_hash: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_by: str | None = None
    used_at: datetime | None = None


@dataclass
class AuditEvent:
    id: str
    action: str  # e.g. "auth.login.succeeded", "token.created", "admin.user.updated"
    created_at: datetime
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    details: dict = field(default_factory=dict)
