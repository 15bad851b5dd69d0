from __future__ import annotations

from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.identity import (
    ApiTokenCreatedOut,
    ApiTokenIn,
    ApiTokenOut,
    ChangePasswordIn,
    SignOutIn,
    SshKeyIn,
    SshKeyOut,
    UpdateMeIn,
    UserOut,
)

TAGS = ["account"]
ERR = [401, 422]


@api.get("/api/v1/users/me", response=UserOut, tags=TAGS, errors=[401])
async def get_me(call: Call) -> UserOut:
    """The signed-in user."""
    return UserOut.model_validate(call.user, from_attributes=True)


@api.patch("/api/v1/users/me", body=UpdateMeIn, response=UserOut, tags=TAGS, errors=ERR)
async def update_me(call: Call) -> UserOut:
    """Update the signed-in user's profile."""
    user = await call.container.account_service().update_profile(call.user.id, display_name=call.body.display_name)
    return UserOut.model_validate(user, from_attributes=True)


@api.post("/api/v1/users/me/password", body=ChangePasswordIn, status=204, tags=TAGS, errors=[401, 409, 422, 429])
async def change_password(call: Call) -> None:
    """Change the password; every other session ends (optionally the API tokens too).

    Access tokens issued before stop working at once, this request's included; the
    refresh token of this login stays valid (refresh to go on), every other is revoked.
    """
    b: ChangePasswordIn = call.body
    await call.container.account_service().change_password(
        call.user.id, b.current_password, b.new_password, session_id=call.principal.session_id,
        revoke_api_tokens=b.revoke_api_tokens, ip=call.ip,
    )


@api.post("/api/v1/users/me/sign-out", body=SignOutIn, status=204, tags=TAGS, errors=ERR)
async def sign_out_everywhere(call: Call) -> None:
    """Sign out everywhere: every access and refresh token of the user (this one included) stops working."""
    await call.container.account_service().sign_out_everywhere(
        call.user.id, revoke_api_tokens=call.body.revoke_api_tokens, ip=call.ip
    )


@api.get("/api/v1/users/me/ssh-keys", response=Page[SshKeyOut], tags=TAGS, errors=[401])
async def list_ssh_keys(call: Call) -> Page[SshKeyOut]:
    """The signed-in user's SSH public keys."""
    keys = await call.container.account_service().list_ssh_keys(call.user.id)
    return Page[SshKeyOut](items=[SshKeyOut.model_validate(k, from_attributes=True) for k in keys], total=len(keys))


@api.post("/api/v1/users/me/ssh-keys", body=SshKeyIn, response=SshKeyOut, status=201, tags=TAGS, errors=[401, 409, 422])
async def add_ssh_key(call: Call) -> SshKeyOut:
    """Add an SSH public key (ed25519, ecdsa, rsa ≥ 2048 bits)."""
    key = await call.container.account_service().add_ssh_key(call.user.id, call.body.public_key, call.body.name)
    return SshKeyOut.model_validate(key, from_attributes=True)


@api.delete("/api/v1/users/me/ssh-keys/{key_id}", status=204, tags=TAGS, errors=[401, 404])
async def delete_ssh_key(call: Call) -> None:
    """Remove an SSH key."""
    await call.container.account_service().delete_ssh_key(call.user.id, call.path("key_id"))


@api.get("/api/v1/users/me/tokens", response=Page[ApiTokenOut], tags=TAGS, errors=[401])
async def list_tokens(call: Call) -> Page[ApiTokenOut]:
    """Personal API tokens (never their secrets)."""
    tokens = await call.container.account_service().list_api_tokens(call.user.id)
    return Page[ApiTokenOut](items=[ApiTokenOut.model_validate(t, from_attributes=True) for t in tokens], total=len(tokens))


@api.post("/api/v1/users/me/tokens", body=ApiTokenIn, response=ApiTokenCreatedOut, status=201, tags=TAGS, errors=[401, 409, 422])
async def create_token(call: Call) -> ApiTokenCreatedOut:
    """Create a personal API token; the secret is in this response only."""
    created = await call.container.account_service().create_api_token(
        call.user.id, call.body.name, call.body.expires_in_days, ip=call.ip
    )
    out = ApiTokenOut.model_validate(created.token, from_attributes=True)
    return ApiTokenCreatedOut(**out.model_dump(), token=created.secret)


@api.delete("/api/v1/users/me/tokens/{token_id}", status=204, tags=TAGS, errors=[401, 404])
async def revoke_token(call: Call) -> None:
    """Revoke a personal API token; it stops working at once."""
    await call.container.account_service().revoke_api_token(call.user.id, call.path("token_id"), ip=call.ip)
