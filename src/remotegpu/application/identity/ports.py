"""Ports of the identity context. Repositories raise nothing for "not found": they return None."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from remotegpu.domain.identity.models import ApiToken, AuditEvent, Invite, RefreshToken, SshKey, User


class UserRepository(Protocol):
    async def add(self, user: User) -> None: ...
    async def get(self, user_id: str) -> User | None: ...
    async def get_by_username(self, username: str) -> User | None: ...
    async def get_by_email(self, email: str) -> User | None: ...
    async def get_by_external_id(self, auth_source: str, external_id: str) -> User | None:
        """The account an identity provider's subject (or a directory DN) signed in as before."""
        ...
    async def update(self, user: User) -> None: ...
    async def list(self, *, search: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        """Users ordered by creation; ``search`` matches username, email or display name."""
        ...
    async def count(self) -> int: ...


@dataclass(frozen=True)
class DirectoryEntry:
    """A person as the directory (LDAP / Active Directory) knows them, after a
    successful bind with their password."""

    external_id: str  # the entry's DN
    username: str
    email: str
    display_name: str
    groups: frozenset[str]  # the groups' common names (cn)


class DirectoryAuthenticator(Protocol):
    async def authenticate(self, username: str, password: str) -> DirectoryEntry | None:
        """The entry of ``username`` if ``password`` binds as it; None for an unknown
        name or a wrong password (the same answer). Raises DirectoryUnavailable when the
        directory cannot be reached."""
        ...


class ApiTokenRepository(Protocol):
    async def add(self, token: ApiToken) -> None: ...
    async def get(self, token_id: str) -> ApiToken | None: ...
    async def get_by_hash(self, token_hash: str) -> ApiToken | None: ...
    async def list_for_user(self, user_id: str) -> list[ApiToken]: ...
    async def update(self, token: ApiToken) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...
    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...
    async def update(self, token: RefreshToken) -> None: ...

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        """Claim an unused, unrevoked token for one rotation: compare-and-set, atomic
        against concurrent claims of the same token (also across processes). True for
        exactly one caller; the others get False."""
        ...

    async def revoke_family(self, family_id: str, at: datetime) -> None: ...

    async def revoke_all_for_user(self, user_id: str, at: datetime, *, except_family: str | None = None) -> None:
        """Revoke every refresh token of the user, but those of ``except_family`` (the caller's own login)."""
        ...

    async def delete_expired(self, before: datetime) -> int:
        """Delete tokens that expired before ``before``; return how many."""
        ...


class SshKeyRepository(Protocol):
    async def add(self, key: SshKey) -> None: ...
    async def get(self, key_id: str) -> SshKey | None: ...
    async def list_for_user(self, user_id: str) -> list[SshKey]: ...
    async def get_by_fingerprint(self, user_id: str, fingerprint: str) -> SshKey | None: ...
    async def delete(self, key_id: str) -> None: ...


class InviteRepository(Protocol):
    async def add(self, invite: Invite) -> None: ...
    async def get_by_hash(self, code_hash: str) -> Invite | None: ...
    async def update(self, invite: Invite) -> None: ...


class AuditLog(Protocol):
    async def add(self, event: AuditEvent) -> None: ...
    async def list(
        self, *, action: str | None, actor_id: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        """Newest first."""
        ...
    async def delete_before(self, before: datetime) -> int: ...


class PasswordHasher(Protocol):
    """Slow on purpose (tens to hundreds of ms of CPU): implementations run the work off
    the event loop, so hashing and verifying are awaited."""

    async def hash(self, password: str) -> str: ...
    async def verify(self, password_hash: str, password: str) -> bool: ...
    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_epoch: int = 0  # the user's epoch when issued; a later epoch voids the token
    session_id: str | None = None  # the refresh-token family (the login) it belongs to


class AccessTokenIssuer(Protocol):
    """Short-lived, signed, stateless access tokens."""

    ttl_seconds: int

    def issue(self, user_id: str, now: datetime, *, session_epoch: int = 0, session_id: str | None = None) -> str: ...

    def verify(self, token: str, now: datetime) -> str | None:
        """Return the user id of a valid, unexpired token; None otherwise."""
        ...

    def verify_claims(self, token: str, now: datetime) -> AccessClaims | None:
        """The claims of a valid, unexpired token; None otherwise."""
        ...


class UserCache(Protocol):
    """Recently seen users by id, so authenticating a request needs no database trip.

    Every use case that changes a user calls ``invalidate`` after its commit; the
    next request then reads the user afresh (a disabled user is refused at once).
    """

    def get(self, user_id: str) -> User | None: ...

    def read_mark(self) -> int:
        """A mark to take before reading a user from the database for ``put``."""
        ...

    def put(self, user: User, read_mark: int | None = None) -> None:
        """Remember ``user``; with ``read_mark``, only when no invalidation of that user
        happened since the mark (else the copy read may predate the change)."""
        ...

    def get_token(self, token_hash: str) -> ApiToken | None:
        """A user's API token by its secret's hash, as last read (never revoked since:
        revoking one invalidates its user, which drops the user's tokens)."""
        ...

    def put_token(self, token: ApiToken, read_mark: int | None = None) -> None:
        """Remember a token; with ``read_mark``, only when its user was not invalidated since."""
        ...

    async def invalidate(self, user_id: str) -> None:
        """Forget the user and the user's API tokens (here and on every replica)."""
        ...
