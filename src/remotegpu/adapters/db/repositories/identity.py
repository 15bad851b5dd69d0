"""SQL repositories of the identity context: explicit row <-> dataclass mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from remotegpu.adapters.db.repositories._base import SqlRepository
from remotegpu.adapters.db.tables import api_tokens, audit_events, invites, refresh_tokens, ssh_keys, users
from remotegpu.domain.identity.models import ApiToken, AuditEvent, Invite, RefreshToken, SshKey, User


def _values(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Column values of a flat domain dataclass (its fields are named like the columns)."""
    return {k: v for k, v in vars(obj).items() if k not in skip}


class SqlUserRepository(SqlRepository):
    async def add(self, user: User) -> None:
        await self._execute(insert(users).values(_values(user)))

    async def get(self, user_id: str) -> User | None:
        # Hot path (every authenticated request): one primary-key select.
        row = (await self._session.execute(select(users).where(users.c.id == user_id))).first()
        return User(**row._mapping) if row else None

    async def get_by_username(self, username: str) -> User | None:
        row = (await self._session.execute(select(users).where(users.c.username == username))).first()
        return User(**row._mapping) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = (await self._session.execute(select(users).where(users.c.email == email))).first()
        return User(**row._mapping) if row else None

    async def get_by_external_id(self, auth_source: str, external_id: str) -> User | None:
        query = select(users).where(users.c.auth_source == auth_source, users.c.external_id == external_id)
        row = (await self._session.execute(query)).first()
        return User(**row._mapping) if row else None

    async def update(self, user: User) -> None:
        await self._execute(update(users).where(users.c.id == user.id).values(_values(user, skip=("id",))))

    async def list(self, *, search: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        query = select(users).order_by(users.c.created_at, users.c.id)
        if search:
            # lower() LIKE instead of ILIKE: the same on SQLite and PostgreSQL.
            term = search.lower()
            query = query.where(
                or_(*(func.lower(c).contains(term, autoescape=True) for c in (users.c.username, users.c.email, users.c.display_name)))
            )
        rows, total = await self._page(query, limit=limit, offset=offset)
        return [User(**r._mapping) for r in rows], total

    async def count(self) -> int:
        return (await self._session.execute(select(func.count()).select_from(users))).scalar_one()


class SqlApiTokenRepository(SqlRepository):
    async def add(self, token: ApiToken) -> None:
        await self._execute(insert(api_tokens).values(_values(token)))

    async def get(self, token_id: str) -> ApiToken | None:
        row = (await self._session.execute(select(api_tokens).where(api_tokens.c.id == token_id))).first()
        return ApiToken(**row._mapping) if row else None

    async def get_by_hash(self, token_hash: str) -> ApiToken | None:
        row = (await self._session.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash))).first()
        return ApiToken(**row._mapping) if row else None

    async def list_for_user(self, user_id: str) -> list[ApiToken]:
        query = select(api_tokens).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.created_at, api_tokens.c.id)
        return [ApiToken(**r._mapping) for r in await self._session.execute(query)]

    async def update(self, token: ApiToken) -> None:
        await self._execute(update(api_tokens).where(api_tokens.c.id == token.id).values(_values(token, skip=("id",))))


class SqlRefreshTokenRepository(SqlRepository):
    async def add(self, token: RefreshToken) -> None:
        await self._execute(insert(refresh_tokens).values(_values(token)))

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        query = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        row = (await self._session.execute(query)).first()
        return RefreshToken(**row._mapping) if row else None

    async def update(self, token: RefreshToken) -> None:
        query = update(refresh_tokens).where(refresh_tokens.c.id == token.id).values(_values(token, skip=("id",)))
        await self._execute(query)

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        # Compare-and-set in one statement. PostgreSQL: a concurrent UPDATE of the row
        # waits for this transaction's row lock, then re-checks the WHERE against the
        # committed row and matches nothing. SQLite: writers are serialised (the UPDATE
        # waits for the write lock, busy_timeout) and see the committed row the same way.
        query = update(refresh_tokens).where(
            refresh_tokens.c.id == token_id, refresh_tokens.c.used_at.is_(None), refresh_tokens.c.revoked_at.is_(None)
        )
        result = await self._execute(query.values(used_at=at))
        return result.rowcount == 1

    async def revoke_family(self, family_id: str, at: datetime) -> None:
        # Tokens revoked earlier keep their original revocation time.
        query = update(refresh_tokens).where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        await self._execute(query.values(revoked_at=at))

    async def revoke_all_for_user(self, user_id: str, at: datetime, *, except_family: str | None = None) -> None:
        query = update(refresh_tokens).where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        if except_family is not None:
            query = query.where(refresh_tokens.c.family_id != except_family)
        await self._execute(query.values(revoked_at=at))

    async def delete_expired(self, before: datetime) -> int:
        result = await self._execute(delete(refresh_tokens).where(refresh_tokens.c.expires_at < before))
        return result.rowcount


class SqlSshKeyRepository(SqlRepository):
    async def add(self, key: SshKey) -> None:
        await self._execute(insert(ssh_keys).values(_values(key)))

    async def get(self, key_id: str) -> SshKey | None:
        row = (await self._session.execute(select(ssh_keys).where(ssh_keys.c.id == key_id))).first()
        return SshKey(**row._mapping) if row else None

    async def list_for_user(self, user_id: str) -> list[SshKey]:
        query = select(ssh_keys).where(ssh_keys.c.user_id == user_id).order_by(ssh_keys.c.created_at, ssh_keys.c.id)
        return [SshKey(**r._mapping) for r in await self._session.execute(query)]

    async def get_by_fingerprint(self, user_id: str, fingerprint: str) -> SshKey | None:
        query = select(ssh_keys).where(ssh_keys.c.user_id == user_id, ssh_keys.c.fingerprint == fingerprint)
        row = (await self._session.execute(query)).first()
        return SshKey(**row._mapping) if row else None

    async def delete(self, key_id: str) -> None:
        await self._execute(delete(ssh_keys).where(ssh_keys.c.id == key_id))


class SqlInviteRepository(SqlRepository):
    async def add(self, invite: Invite) -> None:
        await self._execute(insert(invites).values(_values(invite)))

    async def get_by_hash(self, code_hash: str) -> Invite | None:
        row = (await self._session.execute(select(invites).where(invites.c.code_hash == code_hash))).first()
        return Invite(**row._mapping) if row else None

    async def update(self, invite: Invite) -> None:
        await self._execute(update(invites).where(invites.c.id == invite.id).values(_values(invite, skip=("id",))))


class SqlAuditLog(SqlRepository):
    async def add(self, event: AuditEvent) -> None:
        await self._execute(insert(audit_events).values(_values(event)))

    async def list(
        self, *, action: str | None, actor_id: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        query = select(audit_events).order_by(audit_events.c.created_at.desc(), audit_events.c.id.desc())
        if action is not None:
            query = query.where(audit_events.c.action == action)
        if actor_id is not None:
            query = query.where(audit_events.c.actor_id == actor_id)
        rows, total = await self._page(query, limit=limit, offset=offset)
        return [AuditEvent(**r._mapping) for r in rows], total

    async def delete_before(self, before: datetime) -> int:
        result = await self._execute(delete(audit_events).where(audit_events.c.created_at < before))
        return result.rowcount
