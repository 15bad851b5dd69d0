from __future__ import annotations

from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.identity import LoginIn, RefreshIn, RegisterIn, TokenOut, UserOut

TAGS = ["auth"]


def _tokens(pair) -> TokenOut:
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@api.post("/api/v1/auth/register", body=RegisterIn, response=UserOut, status=201, auth=False, tags=TAGS, errors=[403, 409, 422])
async def register(call: Call) -> UserOut:
    """Create an account (policy: open, invite-only or closed) with a personal workspace."""
    b: RegisterIn = call.body
    user = await call.container.auth_service().register(
        b.username, b.email, b.password, display_name=b.display_name, invite_code=b.invite_code, ip=call.ip
    )
    return UserOut.model_validate(user, from_attributes=True)


@api.post("/api/v1/auth/login", body=LoginIn, response=TokenOut, auth=False, tags=TAGS, errors=[401, 422, 429])
async def login(call: Call) -> TokenOut:
    """Log in by username or email; answers an access token and a rotating refresh token."""
    pair = await call.container.auth_service().login(call.body.username, call.body.password, ip=call.ip)
    return _tokens(pair)


@api.post("/api/v1/auth/refresh", body=RefreshIn, response=TokenOut, auth=False, tags=TAGS, errors=[401, 422])
async def refresh(call: Call) -> TokenOut:
    """Trade a refresh token for a new pair; a reused refresh token revokes its whole family."""
    return _tokens(await call.container.auth_service().refresh(call.body.refresh_token, ip=call.ip))


@api.post("/api/v1/auth/logout", body=RefreshIn, status=204, auth=False, tags=TAGS, errors=[422])
async def logout(call: Call) -> None:
    """Revoke the refresh token's family (this login on every device that shares it)."""
    await call.container.auth_service().logout(call.body.refresh_token)
