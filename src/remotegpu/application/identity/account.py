"""What a signed-in user manages about themselves: profile, SSH keys, API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from remotegpu.application.identity import audit
from remotegpu.application.identity.ports import PasswordHasher, UserCache
from remotegpu.application.identity.secrets import API_TOKEN_PREFIX, hash_secret, new_secret
from remotegpu.application.identity.sessions import end_sessions
from remotegpu.application.shared.ports import Clock, RateLimiter, UnitOfWorkFactory
from remotegpu.domain.identity.models import ApiToken, SshKey, User, check_password_strength
from remotegpu.domain.identity.ssh_keys import parse_public_key
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, RateLimited, Unauthenticated
from remotegpu.domain.shared.ids import new_id

MAX_SSH_KEYS = 50
MAX_API_TOKENS = 50
# Guesses of the current password (someone holding a stolen session must not brute-force it).
PASSWORD_CHANGE_LIMIT, PASSWORD_CHANGE_WINDOW_SECONDS = 10, 300


@dataclass(frozen=True)
class CreatedApiToken:
    token: ApiToken
    secret: str  # returned to the caller once; only its hash is kept


@dataclass
class AccountService:
    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PasswordHasher
    users: UserCache
    limiter: RateLimiter | None = None

    async def update_profile(self, user_id: str, *, display_name: str | None) -> User:
        async with self.uow() as uow:
            user = await self._user(uow, user_id)
            if display_name is not None:
                user.display_name = display_name.strip()[:100]
            await uow.users.update(user)
            await uow.commit()
        await self.users.invalidate(user.id)
        return user

    async def change_password(
        self, user_id: str, current: str, new: str, *, session_id: str | None = None,
        revoke_api_tokens: bool = False, ip: str | None = None,
    ) -> None:
        """Change the password and end every other session: access tokens issued so far
        stop working, refresh families but the caller's (``session_id``) are revoked, and
        the API tokens too when asked. The caller keeps its login: its next refresh works."""
        check_password_strength(new)
        if self.limiter is not None:
            key = f"password-change:user:{user_id}"
            if retry_after := await self.limiter.hit(key, PASSWORD_CHANGE_LIMIT, PASSWORD_CHANGE_WINDOW_SECONDS):
                raise RateLimited("too many password change attempts; try again later", retry_after=retry_after)
        async with self.uow() as uow:
            user = await self._user(uow, user_id)
        if user.auth_source != "local":
            raise Conflict("this account's password is managed by the directory; change it there",
                           code="password_managed_externally")
        old_hash = user.password_hash
        # The hashing takes a while: outside any transaction.
        if not await self.hasher.verify(old_hash, current):
            raise Unauthenticated("current password is wrong", code="invalid_credentials")
        new_hash = await self.hasher.hash(new)
        async with self.uow() as uow:
            user = await self._user(uow, user_id)
            if user.password_hash != old_hash:
                raise Conflict("the password was changed meanwhile; try again", code="password_changed")
            user.password_hash = new_hash
            revoked = await end_sessions(uow, user, self.clock.now(), keep_family=session_id, revoke_api_tokens=revoke_api_tokens)
            await uow.users.update(user)
            await audit.record(
                uow, self.clock, "user.password.changed", actor_id=user.id, target_type="user", target_id=user.id, ip=ip,
                api_tokens_revoked=revoked,
            )
            await uow.commit()
        await self.users.invalidate(user.id)

    async def sign_out_everywhere(self, user_id: str, *, revoke_api_tokens: bool = False, ip: str | None = None) -> None:
        """End every session of the user, this one included (and the API tokens when asked)."""
        async with self.uow() as uow:
            user = await self._user(uow, user_id)
            revoked = await end_sessions(uow, user, self.clock.now(), revoke_api_tokens=revoke_api_tokens)
            await uow.users.update(user)
            await audit.record(
                uow, self.clock, "user.signed_out_everywhere", actor_id=user.id, target_type="user", target_id=user.id,
                ip=ip, api_tokens_revoked=revoked,
            )
            await uow.commit()
        await self.users.invalidate(user.id)

    # --- SSH keys -------------------------------------------------------------------
    async def add_ssh_key(self, user_id: str, public_key: str, name: str | None = None) -> SshKey:
        parsed = parse_public_key(public_key)
        async with self.uow() as uow:
            if await uow.ssh_keys.get_by_fingerprint(user_id, parsed.fingerprint):
                raise Conflict("this key is already registered", code="ssh_key_exists", details={"fingerprint": parsed.fingerprint})
            if len(await uow.ssh_keys.list_for_user(user_id)) >= MAX_SSH_KEYS:
                raise Conflict(f"at most {MAX_SSH_KEYS} SSH keys per user", code="too_many_keys")
            key = SshKey(
                id=new_id(), user_id=user_id, name=(name or parsed.comment or parsed.key_type).strip()[:100],
                key_type=parsed.key_type, public_key=parsed.normalized, fingerprint=parsed.fingerprint,
                created_at=self.clock.now(), comment=parsed.comment[:200],
            )
            await uow.ssh_keys.add(key)
            await audit.record(uow, self.clock, "ssh_key.added", actor_id=user_id, target_type="ssh_key", target_id=key.id, fingerprint=key.fingerprint)
            await uow.commit()
        return key

    async def list_ssh_keys(self, user_id: str) -> list[SshKey]:
        async with self.uow() as uow:
            return await uow.ssh_keys.list_for_user(user_id)

    async def delete_ssh_key(self, user_id: str, key_id: str) -> None:
        async with self.uow() as uow:
            key = await uow.ssh_keys.get(key_id)
            if key is None or key.user_id != user_id:
                raise NotFound("SSH key not found")
            await uow.ssh_keys.delete(key_id)
            await audit.record(uow, self.clock, "ssh_key.deleted", actor_id=user_id, target_type="ssh_key", target_id=key_id, fingerprint=key.fingerprint)
            await uow.commit()

    # --- API tokens -----------------------------------------------------------------
    async def create_api_token(self, user_id: str, name: str, expires_in_days: int | None = None, *, ip: str | None = None) -> CreatedApiToken:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("token name must be 1-100 characters", details={"field": "name"})
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise InvalidInput("expires_in_days must be between 1 and 3650", details={"field": "expires_in_days"})
        now = self.clock.now()
        secret = new_secret(API_TOKEN_PREFIX)
        token = ApiToken(
            id=new_id(), user_id=user_id, name=name, token_hash=hash_secret(secret), prefix=secret[:10],
            created_at=now, expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        async with self.uow() as uow:
            active = [t for t in await uow.api_tokens.list_for_user(user_id) if t.is_usable(now)]
            if len(active) >= MAX_API_TOKENS:
                raise Conflict(f"at most {MAX_API_TOKENS} active API tokens per user", code="too_many_tokens")
            await uow.api_tokens.add(token)
            await audit.record(uow, self.clock, "token.created", actor_id=user_id, target_type="api_token", target_id=token.id, ip=ip, name=name)
            await uow.commit()
        return CreatedApiToken(token=token, secret=secret)

    async def list_api_tokens(self, user_id: str) -> list[ApiToken]:
        async with self.uow() as uow:
            return await uow.api_tokens.list_for_user(user_id)

    async def revoke_api_token(self, user_id: str, token_id: str, *, ip: str | None = None) -> None:
        async with self.uow() as uow:
            token = await uow.api_tokens.get(token_id)
            if token is None or token.user_id != user_id:
                raise NotFound("API token not found")
            if token.revoked_at is None:
                token.revoked_at = self.clock.now()
                await uow.api_tokens.update(token)
                await audit.record(uow, self.clock, "token.revoked", actor_id=user_id, target_type="api_token", target_id=token_id, ip=ip)
                await uow.commit()
                await self.users.invalidate(user_id)  # drops the user's cached tokens, on every replica

    async def _user(self, uow, user_id: str) -> User:
        user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        return user
