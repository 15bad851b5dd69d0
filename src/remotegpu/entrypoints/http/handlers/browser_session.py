"""The web console's session, cookies only (``session.py`` says why and how).

``/api/v1/auth/login|refresh|logout`` stay what API clients and the CLI use: tokens in
JSON bodies, no cookies. The console uses these instead, and never sees a token:

* ``POST /api/v1/auth/session``: log in; sets the cookies, answers the CSRF token.
* ``GET /api/v1/auth/session``: the current cookie session's CSRF token and lifetime
  (after a reload); 401 without one. Readable by the console's own origin only.
* ``POST /api/v1/auth/session/refresh``: rotate the refresh cookie, renew the access cookie.
* ``DELETE /api/v1/auth/session``: log out (revokes the refresh family), clears the cookies.
"""

from __future__ import annotations

import base64
import json
import time

from aiohttp import hdrs, web
from pydantic import BaseModel

from remotegpu.domain.shared.errors import InvalidInput, Unauthenticated
from remotegpu.entrypoints.http import session
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.identity import LoginIn, UserOut

TAGS = ["auth"]


class SessionOut(BaseModel):
    csrf_token: str
    expires_in: int
    user: UserOut


def _require_json(call: Call) -> None:
    """A cross-site form can send text/plain or form encodings without a preflight; JSON it cannot."""
    if call.request.content_type != "application/json":
        raise InvalidInput("send the body as application/json", code="unsupported_media_type")


def _answer(call: Call, pair) -> web.Response:
    settings = call.container.settings()
    response = web.Response(content_type="application/json")
    csrf = session.start_session(
        call.request, response, pair.access_token, pair.expires_in,
        refresh_token=pair.refresh_token, refresh_max_age=settings.refresh_token_ttl_days * 86400,
    )
    out = SessionOut(csrf_token=csrf, expires_in=pair.expires_in, user=UserOut.model_validate(pair.user, from_attributes=True))
    response.body = out.model_dump_json().encode()
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


@api.post(session.SESSION_PATH, body=LoginIn, response=SessionOut, auth=False, tags=TAGS, errors=[401, 403, 422, 429])
async def create_browser_session(call: Call) -> web.Response:
    """Console login: sets httpOnly session cookies (no token in the answer) and answers the CSRF token."""
    _require_json(call)
    pair = await call.container.auth_service().login(call.body.username, call.body.password, ip=call.ip)
    return _answer(call, pair)


@api.get(session.SESSION_PATH, response=SessionOut, auth=False, tags=TAGS, errors=[401])
async def read_browser_session(call: Call) -> web.Response:
    """The cookie session's CSRF token (for a reloaded console); 401 when there is none."""
    token = session.session_token(call.request)
    if not call.request.get(session.VIA_COOKIE) or not token:
        raise Unauthenticated("no browser session", code="no_session")
    expires_in = _remaining(token, call.container.settings().access_token_ttl_seconds)
    out = SessionOut(csrf_token=session.csrf_token_for(call.request.app, token), expires_in=expires_in,
                     user=UserOut.model_validate(call.user, from_attributes=True))
    return web.Response(body=out.model_dump_json().encode(), content_type="application/json", headers={hdrs.CACHE_CONTROL: "no-store"})


@api.post(f"{session.SESSION_PATH}/refresh", response=SessionOut, auth=False, tags=TAGS, errors=[401, 403])
async def refresh_browser_session(call: Call) -> web.Response:
    """Trade the refresh cookie for new cookies (it rotates; a reused one revokes its family)."""
    token = session.refresh_token(call.request)
    if token is None:
        raise Unauthenticated("no browser session to refresh", code="no_session")
    return _answer(call, await call.container.auth_service().refresh(token, ip=call.ip))


@api.delete(session.SESSION_PATH, status=204, auth=False, tags=TAGS, errors=[403])
async def delete_browser_session(call: Call) -> web.Response:
    """Console logout: revokes the refresh family and clears the cookies."""
    token = session.refresh_token(call.request)
    if token is not None:
        await call.container.auth_service().logout(token)
    response = web.Response(status=204)
    session.end_session(response, call.request)
    return response


def _remaining(token: str, fallback: int) -> int:
    """Seconds the access token has left, read from its (already verified) claims."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return max(0, int(claims["exp"] - time.time()))
    except (IndexError, ValueError, KeyError, TypeError):
        return fallback
