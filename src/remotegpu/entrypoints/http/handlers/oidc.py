"""Sign-in with an OpenID Connect provider, for the console (issue 20).

``GET /api/v1/auth/oidc/start?next=/path`` sends the browser to the provider with a
fresh state, nonce and PKCE verifier, which travel sealed (AES-GCM with the server
key) in a short-lived httpOnly cookie scoped to these two paths. The callback accepts
an answer only together with that cookie, so a foreign page cannot sign the victim in
as someone else (login CSRF). It starts the console's cookie session and sends the
browser on to ``next``; a failure lands on the login page with a reason code.

Logout: a session that came from the provider keeps its ID token sealed in a cookie
(``LOGOUT_COOKIE``, httpOnly, scoped to the logout path). The console ends the platform
session as always (``DELETE /api/v1/auth/session``), then navigates to
``GET /api/v1/auth/oidc/logout``, which sends the browser to the provider's
``end_session_endpoint`` (RP-initiated logout: ``id_token_hint``,
``post_logout_redirect_uri`` = the console's login page), so the provider's session ends
too and the next "Sign in with …" asks for the account again.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from aiohttp import web

from remotegpu.domain.shared.errors import DomainError, NotFound
from remotegpu.entrypoints.http import session
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call

TAGS = ["auth"]
PREFIX = "/api/v1/auth/oidc"
COOKIE = "rgpu_oidc"
CONTEXT = "oidc-pending"
MAX_AGE_SECONDS = 600
LOGOUT_COOKIE = "rgpu_oidc_logout"
LOGOUT_PATH = f"{PREFIX}/logout"
LOGOUT_CONTEXT = "oidc-logout"


def _client(call: Call):
    client = call.container.oidc_client()
    if client is None:
        raise NotFound("single sign-on is not configured here")
    return client


def _console_path(value: str | None) -> str:
    # Only a path of this console: never an open redirect to another site.
    return value if value and value.startswith("/") and not value.startswith("//") and "\\" not in value else "/environments"


@api.get(f"{PREFIX}/start", status=302, auth=False, tags=TAGS, errors=[404, 503])
async def oidc_start(call: Call) -> web.StreamResponse:
    """Go to the identity provider to sign in; comes back to the callback."""
    url, pending = await _client(call).begin()
    sealed = call.container.sealer().seal(json.dumps({
        "p": pending.dumps(), "next": _console_path(call.request.query.get("next")), "t": time.time(),
    }).encode(), context=CONTEXT)
    response = _redirect(url)
    response.set_cookie(COOKIE, sealed, max_age=MAX_AGE_SECONDS, path=PREFIX, httponly=True, samesite="Lax",
                        secure=session.is_https(call.request))
    return response


@api.get(f"{PREFIX}/callback", status=302, auth=False, tags=TAGS, errors=[404])
async def oidc_callback(call: Call) -> web.StreamResponse:
    """The identity provider's answer: sign in, start the console session, go on."""
    from remotegpu.adapters.identity.oidc_client import Pending

    client = _client(call)
    query = call.request.query
    target = "/environments"
    try:
        raw = call.request.cookies.get(COOKIE)
        if not raw:
            raise _Failed("oidc_no_pending")
        try:
            saved = json.loads(call.container.sealer().open(raw, context=CONTEXT))
        except Exception:  # noqa: BLE001 - tampered or from another key: the same as none
            raise _Failed("oidc_no_pending") from None
        if time.time() - float(saved["t"]) > MAX_AGE_SECONDS:
            raise _Failed("oidc_expired")
        target = _console_path(saved.get("next"))
        if "error" in query:  # the person cancelled, or the provider refused
            raise _Failed("oidc_refused")
        if not query.get("code") or not query.get("state"):
            raise _Failed("oidc_failed")
        entry, id_token = await client.finish_with_token(query["code"], query["state"], Pending.loads(saved["p"]))
        pair = await call.container.auth_service().external_login(
            "oidc", entry, call.container.oidc_policy(), ip=call.ip)
    except (_Failed, DomainError) as exc:
        code = exc.code if isinstance(exc, DomainError) else str(exc)
        response = _redirect("/login?" + urlencode({"sso_error": code, "next": target}))
        response.del_cookie(COOKIE, path=PREFIX)
        return response
    response = _redirect(target)
    response.del_cookie(COOKIE, path=PREFIX)
    settings = call.container.settings()
    session.start_session(call.request, response, pair.access_token, pair.expires_in,
                          refresh_token=pair.refresh_token, refresh_max_age=settings.refresh_token_ttl_days * 86400)
    sealed_token = call.container.sealer().seal(id_token.encode(), context=LOGOUT_CONTEXT)
    response.set_cookie(LOGOUT_COOKIE, sealed_token, max_age=settings.refresh_token_ttl_days * 86400, path=LOGOUT_PATH,
                        httponly=True, samesite="Lax", secure=session.is_https(call.request))
    return response


@api.get(LOGOUT_PATH, status=302, auth=False, tags=TAGS, errors=[404, 503])
async def oidc_logout(call: Call) -> web.StreamResponse:
    """After the console's logout: end the identity provider's session too (RP-initiated logout), then back to the login page."""
    client = _client(call)
    id_token = None
    raw = call.request.cookies.get(LOGOUT_COOKIE)
    if raw:
        try:
            id_token = call.container.sealer().open(raw, context=LOGOUT_CONTEXT).decode()
        except Exception:  # noqa: BLE001 - tampered or from another key: no hint
            id_token = None
    url = await client.end_session_url(id_token) if id_token else None
    response = _redirect(url or "/login")
    response.del_cookie(LOGOUT_COOKIE, path=LOGOUT_PATH)
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


class _Failed(Exception):
    pass
