"""The console's browser session: httpOnly cookies only, CSRF in memory, Origin checks.

What a page of *another origin* can do must not matter — above all a page served from an
environment's app host (``apps.py``), whose every byte the environment's owner controls.
So the console's credentials are never readable by scripts:

* ``POST /api/v1/auth/session`` (``handlers/browser_session.py``) logs in and sets
  - the **access cookie** (``rgpu_session``): the short-lived signed access token,
    httpOnly, ``SameSite=Lax``, ``Path=/``, host-only (no ``Domain``: the console's host
    alone gets it, never an apps-domain sibling);
  - the **refresh cookie** (``rgpu_refresh``): the rotating refresh token, httpOnly,
    ``SameSite=Strict``, path-scoped to ``/api/v1/auth/session`` (sent nowhere else);
  - the **bind cookie** (``rgpu_bind``): an HMAC of the refresh token, httpOnly, Path=/.
    A refresh needs both to agree. On HTTPS it is ``__Host-`` prefixed, like the access
    cookie: a sibling host of the same site (an app host under ``*.apps.example.com``
    next to a console on ``gpu.example.com``) may plant a ``Domain=example.com`` cookie,
    but never a ``__Host-`` one, so it can neither fix a session of its choosing nor
    stand in for ours. (The refresh cookie cannot be ``__Host-``: that prefix needs
    ``Path=/``; it is ``__Secure-`` and worthless without its binding.)
  ``Secure`` whenever the console is on HTTPS. The answer holds no token.
* CSRF: the token is an HMAC of the access token under the server's secret. The console
  keeps it in memory only, from the login/refresh answer or, after a reload, from
  ``GET /api/v1/auth/session`` — a same-origin read: no CORS header is ever sent, so
  another origin can make the request but not read the answer. A state-changing request
  authenticated by the cookie must send it in ``X-CSRF-Token``. ``Authorization: Bearer``
  (API clients, the CLI) never uses cookies and is exempt.
* The session endpoints themselves (login, refresh, logout by cookie) need an ``Origin``
  of the console: every browser sends one on a POST/DELETE, and a sibling's is not ours.
* Websocket upgrades (the terminal) must come from the console's origin: the cookie
  authorises the upgrade request itself.
* A request another site's page made the browser send (``Sec-Fetch-Site`` same-site or
  cross-site, not a navigation) is not authenticated by the cookie at all.

App hosts never reach this middleware (``apps.apps_middleware`` answers them first), so
no console cookie, Bearer token or CSRF header is ever honoured there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from remotegpu.domain.shared.errors import PermissionDenied, Unauthenticated
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL

SESSION_COOKIE = "rgpu_session"
REFRESH_COOKIE = "rgpu_refresh"
BIND_COOKIE = "rgpu_bind"
#: Where the refresh cookie is sent (login, its GET, refresh and logout live there).
SESSION_PATH = "/api/v1/auth/session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Endpoints that authenticate with their body (credentials, refresh token) or the
#: refresh cookie, never the access cookie: no CSRF header (there is none yet), but
#: the cookie-setting ones need an Origin of the console (``SESSION_ENDPOINTS``).
CSRF_EXEMPT = frozenset({
    "/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh", "/api/v1/auth/logout",
    SESSION_PATH, f"{SESSION_PATH}/refresh",
})
SESSION_ENDPOINTS = frozenset({SESSION_PATH, f"{SESSION_PATH}/refresh"})

#: Set on requests the session cookie authenticated (not a Bearer token).
VIA_COOKIE: web.RequestKey[bool] = web.RequestKey("via_session_cookie")
#: The credential that admitted the request (access token, API token), for live re-checks.
CREDENTIAL: web.RequestKey[str] = web.RequestKey("admitting_credential")
_SECRET: web.AppKey[bytes] = web.AppKey("session_secret")
_PUBLIC_ORIGIN: web.AppKey[str | None] = web.AppKey("session_public_origin")


def install(app: web.Application, secret: str, public_url: str | None = None) -> None:
    app[_SECRET] = hashlib.sha256(b"remotegpu-csrf:" + secret.encode()).digest()
    app[_PUBLIC_ORIGIN] = _origin_of(public_url) if public_url else None


def cookie_names(secure: bool) -> tuple[str, str, str]:
    """(access, refresh, bind) cookie names: prefixed on HTTPS, where browsers enforce the prefixes."""
    if secure:
        return f"__Host-{SESSION_COOKIE}", f"__Secure-{REFRESH_COOKIE}", f"__Host-{BIND_COOKIE}"
    return SESSION_COOKIE, REFRESH_COOKIE, BIND_COOKIE


#: Every name a console cookie may have: the app proxy never forwards them upstream.
PLATFORM_COOKIES = frozenset(cookie_names(False) + cookie_names(True) + ("rgpu_csrf",))


def csrf_token_for(app: web.Application, session_token: str) -> str:
    mac = hmac.new(app[_SECRET], session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _binding(app: web.Application, refresh_token: str) -> str:
    mac = hmac.new(app[_SECRET], b"bind:" + refresh_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def start_session(
    request: web.Request, response: web.StreamResponse, access_token: str, max_age: int,
    refresh_token: str | None = None, refresh_max_age: int | None = None,
) -> str:
    """Set the console's cookies on ``response``; returns the CSRF token for the answer."""
    secure = is_https(request)
    access, refresh, bind = cookie_names(secure)
    response.set_cookie(access, access_token, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=secure)
    if refresh_token is not None:
        life = refresh_max_age or max_age
        response.set_cookie(refresh, refresh_token, max_age=life, path=SESSION_PATH, httponly=True, samesite="Strict", secure=secure)
        response.set_cookie(bind, _binding(request.app, refresh_token), max_age=life, path="/", httponly=True,
                            samesite="Strict", secure=secure)
    return csrf_token_for(request.app, access_token)


def end_session(response: web.StreamResponse, request: web.Request | None = None) -> None:
    secure = is_https(request) if request is not None else False
    access, refresh, bind = cookie_names(secure)
    response.del_cookie(access, path="/", secure=secure)
    response.del_cookie(bind, path="/", secure=secure)
    response.del_cookie(refresh, path=SESSION_PATH, secure=secure)
    if not secure:
        response.del_cookie("rgpu_csrf", path="/")  # the readable cookie of earlier versions


def session_token(request: web.Request) -> str | None:
    return request.cookies.get(cookie_names(is_https(request))[0])


def refresh_token(request: web.Request) -> str | None:
    """The refresh cookie, if its binding cookie (which siblings cannot set) agrees."""
    _, refresh, bind = cookie_names(is_https(request))
    token, binding = request.cookies.get(refresh), request.cookies.get(bind)
    if not token or not binding or not hmac.compare_digest(binding, _binding(request.app, token)):
        return None
    return token


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether an ``Origin`` (or a URL's origin) is this site."""
    mine = _origin_of(f"{request.scheme}://{request.host}")
    theirs = _origin_of(origin)
    return theirs is not None and (theirs == mine or theirs == request.app.get(_PUBLIC_ORIGIN))


def platform_authorization(request: web.Request) -> str | None:
    return request.headers.get(hdrs.AUTHORIZATION)


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


@web.middleware
async def session_middleware(request: web.Request, handler):
    """Authenticate by the session cookie when no Bearer token came; enforce CSRF and Origin."""
    path = request.path
    origin = request.headers.get(hdrs.ORIGIN)
    if is_websocket_upgrade(request) and origin and not same_origin(request, origin):
        raise PermissionDenied("cross-origin request refused", code="origin_mismatch")
    if path in SESSION_ENDPOINTS and request.method not in SAFE_METHODS:
        if not origin or not same_origin(request, origin):
            raise PermissionDenied("the console's session endpoints need an Origin of this site", code="origin_required")
    if PRINCIPAL in request:  # a Bearer token (auth_middleware)
        header = platform_authorization(request) or ""
        request[CREDENTIAL] = header.partition(" ")[2].strip()
        return await handler(request)
    if platform_authorization(request) is not None:
        return await handler(request)
    token = session_token(request)
    if not token or _sent_by_another_site(request):
        return await handler(request)  # anonymous: the cookie only speaks for the console's own pages
    try:
        principal = await request.app[CONTAINER].auth_service().authenticate(token)
    except Unauthenticated:
        return await handler(request)  # a stale cookie is no session: anonymous
    request[PRINCIPAL] = principal
    request[VIA_COOKIE] = True
    request[CREDENTIAL] = token
    if request.method not in SAFE_METHODS and path not in CSRF_EXEMPT and not is_websocket_upgrade(request):
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, csrf_token_for(request.app, token)):
            raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header", code="csrf_failed")
    return await handler(request)


def _sent_by_another_site(request: web.Request) -> bool:
    """A request another site's page made the browser send (``Sec-Fetch-Site``), other than
    a page navigation (a link, the app handshake). With the apps domain same-site with the
    console (``*.apps.example.com`` next to ``gpu.example.com``), ``SameSite=Lax`` still
    lets such requests carry the cookie; CSRF tokens and CORS already keep them from doing
    or reading anything, and this keeps the cookie from authenticating them at all."""
    site = request.headers.get("Sec-Fetch-Site")
    return site in ("same-site", "cross-site") and request.headers.get("Sec-Fetch-Mode") != "navigate"


def is_https(request: web.Request) -> bool:
    public = request.app.get(_PUBLIC_ORIGIN)
    return request.secure or bool(public and public.startswith("https://"))


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


origin_of = _origin_of
