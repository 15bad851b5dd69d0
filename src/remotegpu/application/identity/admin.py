"""Platform administration: users, admins, invites, the audit log, and the first admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from remotegpu.application.identity import audit
from remotegpu.application.identity.ports import PasswordHasher, UserCache
from remotegpu.application.identity.secrets import hash_secret, new_secret
from remotegpu.application.identity.sessions import end_sessions
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.workspaces.personal import create_personal_workspace
from remotegpu.domain.identity.models import (
    AuditEvent,
    Invite,
    User,
    check_password_strength,
    normalize_email,
    normalize_username,
)
from remotegpu.domain.shared.errors import Conflict, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id


def require_admin(actor: User) -> None:
    if not actor.is_admin:
        # Admin endpoints are not secret; a plain 403 tells the user why.
        raise PermissionDenied("platform administrators only", code="admin_required")


@dataclass
class AdminService:
    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PasswordHasher
    users: UserCache

    async def list_users(self, actor: User, *, search: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        require_admin(actor)
        async with self.uow() as uow:
            return await uow.users.list(search=search, limit=limit, offset=offset)

    async def get_user(self, actor: User, user_id: str) -> User:
        require_admin(actor)
        async with self.uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        return user

    async def update_user(
        self, actor: User, user_id: str, *, is_active: bool | None = None, is_admin: bool | None = None, ip: str | None = None
    ) -> User:
        require_admin(actor)
        if user_id == actor.id and (is_active is False or is_admin is False):
            raise Conflict("administrators cannot disable or demote themselves", code="self_lockout")
        async with self.uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("user not found")
            changes = {}
            if is_active is not None and is_active != user.is_active:
                user.is_active = is_active
                changes["is_active"] = is_active
                if not is_active:
                    # Access tokens die at once too (even if re-enabled later); API tokens stay
                    # (refused while disabled, back when enabled).
                    await end_sessions(uow, user, self.clock.now())
            if is_admin is not None and is_admin != user.is_admin:
                user.is_admin = is_admin
                changes["is_admin"] = is_admin
            if changes:
                await uow.users.update(user)
                await audit.record(uow, self.clock, "admin.user.updated", actor_id=actor.id, target_type="user", target_id=user.id, ip=ip, **changes)
                await uow.commit()
        await self.users.invalidate(user.id)
        return user

    async def sign_out_everywhere(
        self, actor: User, user_id: str, *, revoke_api_tokens: bool = False, ip: str | None = None
    ) -> User:
        """End every session of a user at once (e.g. a stolen laptop): access tokens stop
        working, refresh tokens are revoked, and the API tokens too when asked."""
        require_admin(actor)
        async with self.uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("user not found")
            revoked = await end_sessions(uow, user, self.clock.now(), revoke_api_tokens=revoke_api_tokens)
            await uow.users.update(user)
            await audit.record(
                uow, self.clock, "admin.user.signed_out", actor_id=actor.id, target_type="user", target_id=user.id, ip=ip,
                api_tokens_revoked=revoked,
            )
            await uow.commit()
        await self.users.invalidate(user.id)
        return user

    async def create_invite(self, actor: User, *, valid_days: int = 7) -> tuple[Invite, str]:
        require_admin(actor)
        now = self.clock.now()
        code = new_secret("inv_")
        invite = Invite(id=new_id(), code_hash=hash_secret(code), created_by=actor.id, created_at=now, expires_at=now + timedelta(days=valid_days))
        async with self.uow() as uow:
            await uow.invites.add(invite)
            await audit.record(uow, self.clock, "admin.invite.created", actor_id=actor.id, target_type="invite", target_id=invite.id)
            await uow.commit()
        return invite, code

    async def list_audit(
        self, actor: User, *, action: str | None, actor_id: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        require_admin(actor)
        async with self.uow() as uow:
            return await uow.audit.list(action=action, actor_id=actor_id, limit=limit, offset=offset)

    async def create_admin(self, username: str, email: str, password: str) -> User:
        """Create a platform admin (CLI and first start-up); promotes an existing user of that name."""
        username, email = normalize_username(username), normalize_email(email)
        check_password_strength(password)
        now = self.clock.now()
        async with self.uow() as uow:
            user = await uow.users.get_by_username(username)
            if user is not None:
                if not await self.hasher.verify(user.password_hash, password):
                    # A password reset by the operator: the sessions of the old one end.
                    user.password_hash = await self.hasher.hash(password)
                    await end_sessions(uow, user, now)
                user.is_admin, user.is_active = True, True
                await uow.users.update(user)
            else:
                user = User(id=new_id(), username=username, email=email, password_hash=await self.hasher.hash(password), created_at=now, is_admin=True)
                await uow.users.add(user)
                await create_personal_workspace(uow, user, now)
            await audit.record(uow, self.clock, "admin.bootstrap", target_type="user", target_id=user.id, username=username)
            await uow.commit()
        await self.users.invalidate(user.id)
        return user

    async def has_users(self) -> bool:
        async with self.uow() as uow:
            return await uow.users.count() > 0
