from __future__ import annotations

from aiohttp import web

from remotegpu.entrypoints.http import session
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.identity import LoginIn, RefreshIn, RegisterIn, SignInOptionsOut, TokenOut, UserOut

TAGS = ["auth"]


def _tokens(pair) -> TokenOut:
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


def _session_response(call: Call, pair) -> web.Response:
    """The token pair as JSON, plus the browser session cookie and its CSRF token."""
    response = web.Response(content_type="application/json")
    out = _tokens(pair)
    response.body = out.model_dump_json().encode()
    return response


@api.post("/api/v1/auth/register", body=RegisterIn, response=UserOut, status=201, auth=False, tags=TAGS, errors=[403, 409, 422, 429])
async def register(call: Call) -> UserOut:
    """Create an account (policy: open, invite-only or closed) with a personal workspace."""
    b: RegisterIn = call.body
    user = await call.container.auth_service().register(
        b.username, b.email, b.password, display_name=b.display_name, invite_code=b.invite_code, ip=call.ip
    )
    return UserOut.model_validate(user, from_attributes=True)


@api.get("/api/v1/auth/providers", response=SignInOptionsOut, auth=False, tags=TAGS)
async def sign_in_options(call: Call) -> SignInOptionsOut:
    """How people sign in here, for the login page: local passwords, the LDAP directory, or both."""
    settings = call.container.settings()
    return SignInOptionsOut(local_passwords=settings.local_passwords, ldap=bool(settings.ldap_url),
                            oidc=settings.oidc_display_name if settings.oidc_issuer else None)


@api.post("/api/v1/auth/login", body=LoginIn, response=TokenOut, auth=False, tags=TAGS, errors=[401, 403, 409, 422, 429, 503])
async def login(call: Call) -> web.Response:
    """Log in by username or email; answers an access token and a rotating refresh token."""
    pair = await call.container.auth_service().login(call.body.username, call.body.password, ip=call.ip)
    return _session_response(call, pair)


@api.post("/api/v1/auth/refresh", body=RefreshIn, response=TokenOut, auth=False, tags=TAGS, errors=[401, 403, 422])
async def refresh(call: Call) -> web.Response:
    """Trade a refresh token for a new pair; a reused refresh token revokes its whole family."""
    return _session_response(call, await call.container.auth_service().refresh(call.body.refresh_token, ip=call.ip))


@api.post("/api/v1/auth/logout", body=RefreshIn, status=204, auth=False, tags=TAGS, errors=[403, 422])
async def logout(call: Call) -> web.Response:
    """Revoke the refresh token's family (this login on every device that shares it); clears the session cookie."""
    await call.container.auth_service().logout(call.body.refresh_token)
    response = web.Response(status=204)
    session.end_session(response)
    return response
