from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from remotegpu.domain.identity.models import MIN_PASSWORD_LENGTH
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict


class RegisterIn(Strict):
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$", description="3-32 characters; stored lower-case")
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
    display_name: str = Field("", max_length=100)
    invite_code: str | None = Field(None, max_length=200)


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=254, description="username or email")
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    csrf_token: str | None = Field(
        None, description="send it as X-CSRF-Token on state-changing requests that rely on the session cookie"
    )


class UserOut(BaseModel):
    id: str
    username: str
    email: str
    display_name: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    last_login_at: datetime | None
    auth_source: str = Field("local", description="where the password is checked: local or ldap (no local password)")


class SignInOptionsOut(BaseModel):
    local_passwords: bool = Field(description="username + password checked by the platform")
    ldap: bool = Field(description="username + password checked by the organisation's LDAP directory")
    oidc: str | None = Field(None, description="the OpenID Connect provider's name (sign in at /api/v1/auth/oidc/start); null: none")


class UpdateMeIn(Strict):
    display_name: str | None = Field(None, max_length=100)


class ChangePasswordIn(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
    revoke_api_tokens: bool = Field(False, description="also revoke every personal API token of the user")


class SignOutIn(Strict):
    revoke_api_tokens: bool = Field(False, description="also revoke every personal API token of the user")


class SshKeyIn(Strict):
    public_key: str = Field(min_length=1, max_length=16384)
    name: str | None = Field(None, max_length=100)


class SshKeyOut(BaseModel):
    id: str
    name: str
    key_type: str
    fingerprint: str
    public_key: str
    created_at: datetime


class ApiTokenIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class ApiTokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreatedOut(ApiTokenOut):
    token: str = Field(description="the secret, shown only in this response")


class UserPatchIn(Strict):
    is_active: bool | None = None
    is_admin: bool | None = None


class UserListQuery(PageQuery):
    search: str | None = Field(None, max_length=100)


class AuditQuery(PageQuery):
    action: str | None = Field(None, max_length=100)
    actor_id: str | None = Field(None, max_length=64)


class AuditEventOut(BaseModel):
    id: str
    action: str
    created_at: datetime
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: dict


class InviteIn(Strict):
    valid_days: int = Field(7, ge=1, le=90)


class InviteOut(BaseModel):
    id: str
    code: str = Field(description="the invite code, shown only in this response")
    expires_at: datetime
