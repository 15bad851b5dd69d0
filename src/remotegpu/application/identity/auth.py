"""Registration, login, token refresh with rotation, logout, and resolving a bearer token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from remotegpu.application.identity import audit
from remotegpu.application.identity.directory import LDAP, DirectoryPolicy, account_for
from remotegpu.application.identity.ports import (
    AccessTokenIssuer,
    DirectoryAuthenticator,
    DirectoryEntry,
    PasswordHasher,
    UserCache,
)
from remotegpu.application.identity.secrets import (
    API_TOKEN_PREFIX,
    REFRESH_TOKEN_PREFIX,
    hash_secret,
    new_secret,
)
from remotegpu.application.shared.ports import Clock, RateLimiter, UnitOfWorkFactory
from remotegpu.application.workspaces.personal import create_personal_workspace
from remotegpu.domain.identity.models import (
    RefreshToken,
    RegistrationPolicy,
    User,
    check_password_strength,
    normalize_email,
    normalize_username,
)
from remotegpu.domain.shared.errors import Conflict, InvalidInput, PermissionDenied, RateLimited, Unauthenticated
from remotegpu.domain.shared.ids import new_id


@dataclass(frozen=True)
class AuthSettings:
    registration_policy: RegistrationPolicy = RegistrationPolicy.OPEN
    refresh_ttl: timedelta = timedelta(days=14)
    # Login attempts per window: against one account from one address (what stops a
    # guesser), against one account from all addresses together (a backstop against
    # guessing from many addresses, much higher, so a stranger cannot lock the owner
    # out), and from one address whatever the account.
    login_limit_per_account: int = 10
    login_limit_per_account_all_ips: int = 100
    login_limit_per_ip: int = 50
    login_window_seconds: int = 300
    register_limit_per_ip: int = 10
    register_window_seconds: int = 3600
    # False: only the directory (or another identity provider) signs people in;
    # registration is closed and local passwords never verify.
    local_passwords: bool = True


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # "access_token" | "api_token"
    token_id: str | None = None
    session_id: str | None = None  # access tokens: the login (refresh family) they belong to


@dataclass
class AuthService:
    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PasswordHasher
    issuer: AccessTokenIssuer
    limiter: RateLimiter
    users: UserCache
    settings: AuthSettings = field(default_factory=AuthSettings)
    directory: DirectoryAuthenticator | None = None
    directory_policy: DirectoryPolicy = field(default_factory=DirectoryPolicy)
    _dummy_hash: str | None = field(default=None, init=False, repr=False)

    async def register(
        self,
        username: str,
        email: str,
        password: str,
        *,
        display_name: str = "",
        invite_code: str | None = None,
        ip: str | None = None,
    ) -> User:
        policy = self.settings.registration_policy
        if policy is RegistrationPolicy.CLOSED or not self.settings.local_passwords:
            raise PermissionDenied("registration is closed; ask an administrator for an account", code="registration_closed")
        s = self.settings
        await self._limit(f"register:ip:{ip}", s.register_limit_per_ip, s.register_window_seconds, "too many registrations from this address")
        username = normalize_username(username)
        email = normalize_email(email)
        check_password_strength(password)
        # Hash before the transaction: it takes a while, and holds no connection meanwhile.
        password_hash = await self.hasher.hash(password)
        now = self.clock.now()
        async with self.uow() as uow:
            invite = None
            if policy is RegistrationPolicy.INVITE_ONLY:
                invite = await uow.invites.get_by_hash(hash_secret(invite_code or ""))
                if invite is None or invite.used_at is not None or invite.expires_at <= now:
                    raise PermissionDenied("registration needs a valid, unused invite code", code="invite_required")
            if await uow.users.get_by_username(username):
                raise Conflict("username is already taken", code="username_taken", details={"field": "username"})
            if await uow.users.get_by_email(email):
                raise Conflict("email is already registered", code="email_taken", details={"field": "email"})
            user = User(
                id=new_id(),
                username=username,
                email=email,
                password_hash=password_hash,
                created_at=now,
                display_name=display_name.strip()[:100],
            )
            await uow.users.add(user)
            if invite is not None:
                invite.used_at, invite.used_by = now, user.id
                await uow.invites.update(invite)
            await create_personal_workspace(uow, user, now)
            await audit.record(uow, self.clock, "user.registered", actor_id=user.id, target_type="user", target_id=user.id, ip=ip)
            await uow.commit()
        return user

    async def login(self, login: str, password: str, *, ip: str | None = None) -> TokenPair:
        login = login.strip().lower()
        if not login or not password:
            raise InvalidInput("username (or email) and password are required")
        s = self.settings
        await self._limit(f"login:ip:{ip}", s.login_limit_per_ip, s.login_window_seconds, "too many login attempts")
        async with self.uow() as uow:
            user = await (uow.users.get_by_email(login) if "@" in login else uow.users.get_by_username(login))
        # Username and email are one account: count attempts against the user, not the name typed.
        account = f"user:{user.id}" if user else f"name:{login}"
        per_account_and_ip = f"login:acct:{account}:ip:{ip}"
        await self._limit(per_account_and_ip, s.login_limit_per_account, s.login_window_seconds, "too many login attempts")
        backstop = max(s.login_limit_per_account_all_ips, s.login_limit_per_account)
        await self._limit(f"login:acct:{account}", backstop, s.login_window_seconds, "too many login attempts")
        if self.directory is not None and (user is None or user.auth_source == LDAP):
            return await self._directory_login(user.username if user else login, password, user, ip, per_account_and_ip)
        # Equal work whether or not the name exists: an unknown one is checked against a
        # hash of a random password, so the answer's timing does not tell them apart.
        verified = await self.hasher.verify(user.password_hash if user else await self._dummy(), password)
        verified_hash = user.password_hash if user else None
        async with self.uow() as uow:
            # Read again: the account may have changed (disabled, new password) during the
            # hash. An unknown name reads too (nothing): the same work on both paths.
            user = await uow.users.get(user.id if user else "")
            ok = user is not None and verified and user.password_hash == verified_hash and s.local_passwords
            if not ok or not user.is_active:
                await audit.record(
                    uow, self.clock, "auth.login.failed", actor_id=user.id if user else None, ip=ip,
                    login=login, reason="inactive" if ok else "bad_credentials",
                )
                await uow.commit()
                # The same answer for unknown user, wrong password and disabled account.
                raise Unauthenticated("invalid credentials", code="invalid_credentials")
            if self.hasher.needs_rehash(user.password_hash):
                user.password_hash = await self.hasher.hash(password)
            user.last_login_at = self.clock.now()
            await uow.users.update(user)
            pair = await self._issue_pair(uow, user, family_id=new_id())
            await audit.record(uow, self.clock, "auth.login.succeeded", actor_id=user.id, target_type="user", target_id=user.id, ip=ip)
            await uow.commit()
        await self.users.invalidate(user.id)
        await self.limiter.reset(per_account_and_ip)
        return pair

    async def _directory_login(self, login: str, password: str, user: User | None, ip: str | None,
                               limit_key: str) -> TokenPair:
        """Sign in by a bind against the directory; the account follows the entry."""
        entry = await self.directory.authenticate(login, password)
        async with self.uow() as uow:
            if entry is not None:
                # Read again inside the transaction: another sign-in may have created it.
                user = await uow.users.get_by_username(entry.username.strip().lower()) or (
                    await uow.users.get(user.id) if user else None)
                if user is not None and user.auth_source != LDAP:
                    entry = None  # a local account with the directory's name: never taken over
            if entry is None or (user is not None and not user.is_active):
                await audit.record(uow, self.clock, "auth.login.failed", actor_id=user.id if user else None, ip=ip,
                                   login=login, reason="bad_credentials" if entry is None else "inactive", source="ldap")
                await uow.commit()
                raise Unauthenticated("invalid credentials", code="invalid_credentials")
            user = await account_for(uow, self.clock, self.directory_policy, entry, user, ip)
            user.last_login_at = self.clock.now()
            await uow.users.update(user)
            pair = await self._issue_pair(uow, user, family_id=new_id())
            await audit.record(uow, self.clock, "auth.login.succeeded", actor_id=user.id, target_type="user",
                               target_id=user.id, ip=ip, source="ldap")
            await uow.commit()
        await self.users.invalidate(user.id)
        await self.limiter.reset(limit_key)
        return pair

    async def external_login(self, source: str, entry: DirectoryEntry, policy: DirectoryPolicy, *,
                             ip: str | None = None) -> TokenPair:
        """Sign in someone an identity provider vouched for (OIDC: a verified ID token).
        The account is found by (source, subject), never by name or email."""
        async with self.uow() as uow:
            user = await uow.users.get_by_external_id(source, entry.external_id)
            if user is not None and not user.is_active:
                await audit.record(uow, self.clock, "auth.login.failed", actor_id=user.id, ip=ip, login=user.username,
                                   reason="inactive", source=source)
                await uow.commit()
                raise Unauthenticated("account is disabled", code="account_disabled")
            user = await account_for(uow, self.clock, policy, entry, user, ip, source=source)
            user.last_login_at = self.clock.now()
            await uow.users.update(user)
            pair = await self._issue_pair(uow, user, family_id=new_id())
            await audit.record(uow, self.clock, "auth.login.succeeded", actor_id=user.id, target_type="user",
                               target_id=user.id, ip=ip, source=source)
            await uow.commit()
        await self.users.invalidate(user.id)
        return pair

    async def refresh(self, refresh_token: str, *, ip: str | None = None) -> TokenPair:
        now = self.clock.now()
        async with self.uow() as uow:
            token = await uow.refresh_tokens.get_by_hash(hash_secret(refresh_token))
            if token is None or token.revoked_at is not None or token.expires_at <= now:
                raise Unauthenticated("refresh token is invalid or expired", code="invalid_refresh_token")
            user = await uow.users.get(token.user_id)
            if token.used_at is None and (user is None or not user.is_active):
                raise Unauthenticated("account is disabled", code="account_disabled")
            # Claim the token (compare-and-set): of concurrent refreshes of one token
            # exactly one wins; the others are a reuse, like presenting it again later.
            if token.used_at is not None or not await uow.refresh_tokens.mark_used(token.id, now):
                # Reuse of a rotated token: someone holds a copy. Kill the whole chain.
                await uow.refresh_tokens.revoke_family(token.family_id, now)
                await audit.record(
                    uow, self.clock, "auth.refresh.reused", actor_id=token.user_id, target_type="user",
                    target_id=token.user_id, ip=ip, family_id=token.family_id,
                )
                await uow.commit()
                raise Unauthenticated("refresh token was already used; all sessions of this login are revoked", code="refresh_token_reused")
            pair = await self._issue_pair(uow, user, family_id=token.family_id)
            await uow.commit()
        return pair

    async def logout(self, refresh_token: str) -> None:
        now = self.clock.now()
        async with self.uow() as uow:
            token = await uow.refresh_tokens.get_by_hash(hash_secret(refresh_token))
            if token is not None:
                await uow.refresh_tokens.revoke_family(token.family_id, now)
                await uow.commit()

    async def authenticate(self, bearer: str) -> Principal:
        """Resolve an access token or personal API token to an active user, or raise Unauthenticated.

        Long-lived connections (event streams, websockets) call it again now and then:
        a disabled account, a revoked API token or an access token voided by a password
        change or "sign out everywhere" stops them too.
        """
        now = self.clock.now()
        if bearer.startswith(API_TOKEN_PREFIX):
            return await self._api_token_principal(bearer, now)
        claims = self.issuer.verify_claims(bearer, now)
        if claims is None:
            raise Unauthenticated("access token is invalid or expired", code="invalid_token")
        user = await self._cached_user(claims.user_id)
        if user is not None and claims.session_epoch > user.session_epoch:
            # Issued after a change this replica has not heard of yet: read afresh.
            user = await self._cached_user(claims.user_id, fresh=True)
        if user is None or not user.is_active:
            raise Unauthenticated("account is disabled", code="account_disabled")
        if claims.session_epoch < user.session_epoch:
            raise Unauthenticated(
                "this session was ended (password changed, or signed out everywhere); log in again", code="session_ended"
            )
        return Principal(user=user, via="access_token", session_id=claims.session_id)

    async def _api_token_principal(self, bearer: str, now) -> Principal:
        """A personal API token's user. The token comes from the user cache while its
        last-used stamp is fresh (no database trip); revoking a token invalidates its
        user there, which drops the user's tokens, so a revoked token is refused at once.
        Once a minute per token the stamp is written: the token is read afresh for it."""
        token_hash = hash_secret(bearer)
        token = self.users.get_token(token_hash)
        if token is not None and token.is_usable(now) and token.last_used_at is not None \
                and timedelta(0) <= now - token.last_used_at <= timedelta(minutes=1):
            user = await self._cached_user(token.user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("account is disabled", code="account_disabled")
            return Principal(user=user, via="api_token", token_id=token.id)
        mark = self.users.read_mark()
        async with self.uow() as uow:
            token = await uow.api_tokens.get_by_hash(token_hash)
            if token is None or not token.is_usable(now):
                raise Unauthenticated("API token is invalid, expired or revoked", code="invalid_token")
            user = await uow.users.get(token.user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("account is disabled", code="account_disabled")
            # Coarse last-used stamp: at most one write a minute per token.
            if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
                token.last_used_at = now
                await uow.api_tokens.update(token)
                await uow.commit()
        self.users.put(user, mark)
        self.users.put_token(token, mark)
        return Principal(user=user, via="api_token", token_id=token.id)

    async def is_active(self, user_id: str) -> bool:
        """Whether the account may still act: long-lived connections (the event stream)
        ask this now and then, so disabling an account also ends them."""
        user = await self._cached_user(user_id)
        return user is not None and user.is_active

    async def _cached_user(self, user_id: str, *, fresh: bool = False) -> User | None:
        """The user from the cache (invalidated on every change), else the database."""
        user = None if fresh else self.users.get(user_id)
        if user is None:
            mark = self.users.read_mark()
            async with self.uow() as uow:
                user = await uow.users.get(user_id)
            if user is not None:
                self.users.put(user, mark)
        return user

    async def _limit(self, key: str, limit: int, window_seconds: int, message: str) -> None:
        retry_after = await self.limiter.hit(key, limit, window_seconds)
        if retry_after:
            raise RateLimited(f"{message}; try again later", retry_after=retry_after)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hasher.hash(new_secret("dummy_"))
        return self._dummy_hash

    async def _issue_pair(self, uow, user: User, *, family_id: str) -> TokenPair:
        now = self.clock.now()
        secret = new_secret(REFRESH_TOKEN_PREFIX)
        await uow.refresh_tokens.add(
            RefreshToken(
                id=new_id(), user_id=user.id, family_id=family_id, token_hash=hash_secret(secret),
                created_at=now, expires_at=now + self.settings.refresh_ttl,
            )
        )
        return TokenPair(
            access_token=self.issuer.issue(user.id, now, session_epoch=user.session_epoch, session_id=family_id),
            refresh_token=secret,
            expires_in=self.issuer.ttl_seconds, user=user,
        )
