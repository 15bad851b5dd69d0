"""Browser session: an httpOnly cookie, CSRF protection and Origin checks.

Design (kept deliberately stateless, so any replica verifies a request alone):

* The session cookie ``rgpu_session`` carries the same short-lived signed access token
  that login/refresh answer (HS256 JWT, ``AccessTokenIssuer``): httpOnly,
  ``SameSite=Lax``, ``Path=/``, ``Secure`` behind HTTPS, ``Max-Age`` = the token's life.
  Login sets it, refresh renews it (the console refreshes before expiry, so a JupyterLab
  tab opened from it stays authorised), logout clears it. Revocation is what it is for
  access tokens: a disabled user is refused at once, a logout ends the cookie.
* CSRF, double submit, signed: the CSRF token is an HMAC of the session token under the
  server's secret. Login/refresh answer it as ``csrf_token`` and also set it in the
  readable cookie ``rgpu_csrf`` (so a reloaded page finds it). A state-changing request
  (not GET/HEAD/OPTIONS) authenticated by the cookie must send it back in
  ``X-CSRF-Token``; being bound to the session, a cookie planted by a sibling domain is
  useless. Requests with ``Authorization: Bearer`` never use the cookie and are exempt.
  The auth endpoints are exempt (they authenticate with their body, not the cookie).
* ``/proxy/`` cannot ask JupyterLab to send our header: there a state-changing request
  authenticated by the cookie needs an ``Origin`` (or ``Referer``) of this site, which
  browsers send on every cross-origin attempt; SameSite=Lax already keeps the cookie
  off cross-site POSTs.
* Websocket upgrades (the terminal, Jupyter kernels) and every ``/proxy/`` request
  with an ``Origin`` header must come from this site (the request's own host, or
  ``REMOTEGPU_PUBLIC_URL``): the cookie authorises the upgrade request itself.
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
CSRF_COOKIE = "rgpu_csrf"
CSRF_HEADER = "X-CSRF-Token"
PLATFORM_COOKIES = frozenset({SESSION_COOKIE, CSRF_COOKIE})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROXY_PREFIX = "/proxy/"
#: Endpoints that authenticate with their body (credentials, refresh token), never the cookie.
CSRF_EXEMPT = frozenset({"/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh", "/api/v1/auth/logout"})

#: Set on requests the session cookie authenticated (not a Bearer token).
VIA_COOKIE: web.RequestKey[bool] = web.RequestKey("via_session_cookie")
_SECRET: web.AppKey[bytes] = web.AppKey("session_secret")
_PUBLIC_ORIGIN: web.AppKey[str | None] = web.AppKey("session_public_origin")


def install(app: web.Application, secret: str, public_url: str | None = None) -> None:
    app[_SECRET] = hashlib.sha256(b"remotegpu-csrf:" + secret.encode()).digest()
    app[_PUBLIC_ORIGIN] = _origin_of(public_url) if public_url else None


def csrf_token_for(app: web.Application, session_token: str) -> str:
    mac = hmac.new(app[_SECRET], session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def start_session(request: web.Request, response: web.StreamResponse, access_token: str, max_age: int) -> str:
    """Set the session and CSRF cookies on ``response``; returns the CSRF token."""
    csrf = csrf_token_for(request.app, access_token)
    secure = _is_https(request)
    response.set_cookie(SESSION_COOKIE, access_token, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", httponly=False, samesite="Lax", secure=secure)
    return csrf


def end_session(response: web.StreamResponse) -> None:
    for name in PLATFORM_COOKIES:
        response.del_cookie(name, path="/")


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether an ``Origin`` (or a URL's origin) is this site."""
    mine = _origin_of(f"{request.scheme}://{request.host}")
    theirs = _origin_of(origin)
    return theirs is not None and (theirs == mine or theirs == request.app.get(_PUBLIC_ORIGIN))


def platform_authorization(request: web.Request) -> str | None:
    """The ``Authorization`` header if it is meant for the platform. Under ``/proxy/``
    only a Bearer one is: JupyterLab's own frontend sends ``token <its token>`` (the one
    in its page, masked by the proxy) on every call, and there the session cookie
    authenticates (the proxy sets Jupyter's real token itself)."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header and request.path.startswith(PROXY_PREFIX) and header.partition(" ")[0].lower() != "bearer":
        return None
    return header


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


@web.middleware
async def session_middleware(request: web.Request, handler):
    """Authenticate by the session cookie when no Bearer token came; enforce CSRF and Origin."""
    path = request.path
    origin = request.headers.get(hdrs.ORIGIN)
    if (is_websocket_upgrade(request) or path.startswith(PROXY_PREFIX)) and origin and not same_origin(request, origin):
        raise PermissionDenied("cross-origin request refused", code="origin_mismatch")
    if platform_authorization(request) is not None or PRINCIPAL in request:
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return await handler(request)
    try:
        principal = await request.app[CONTAINER].auth_service().authenticate(token)
    except Unauthenticated:
        return await handler(request)  # a stale cookie is no session: anonymous
    request[PRINCIPAL] = principal
    request[VIA_COOKIE] = True
    if request.method not in SAFE_METHODS and path not in CSRF_EXEMPT and not is_websocket_upgrade(request):
        if path.startswith(PROXY_PREFIX):
            source = origin or request.headers.get(hdrs.REFERER)
            if not source or not same_origin(request, source):
                raise PermissionDenied("a state-changing request needs an Origin of this site", code="origin_required")
        else:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, csrf_token_for(request.app, token)):
                raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header", code="csrf_failed")
    return await handler(request)


def _is_https(request: web.Request) -> bool:
    public = request.app.get(_PUBLIC_ORIGIN)
    return request.secure or bool(public and public.startswith("https://"))


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    port = parts.port
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")
