"""Environment web apps on hosts of their own: ``{env_id}--{app}.{apps_domain}``.

The same aiohttp server (same port) answers the console's host and every app host; the
``Host`` header decides (``apps_middleware``, ahead of every other authentication).
An app host serves its app and the handshake callback — nothing else: no API, no
console, no console cookie or Bearer token honoured. Anything under the apps domain that
names no app of ours is 404.

The handshake (``application/environments/app_access.py`` holds the rules):

1. A request on an app host without a valid app cookie: a page navigation is sent to the
   console's authorize endpoint (``GET /api/v1/environments/{id}/apps/{app}/authorize``,
   on the console's origin, where the console's session cookie is); other requests 401.
2. The authorize endpoint checks the console session (none: to the login page, and back)
   and the user's right to enter the environment (``EnvironmentEntry``; else 404), then
   redirects to ``{app origin}/_remotegpu/callback`` with a one-time ticket
   (``TICKET_SECONDS``).
3. The callback spends the ticket (once: a second use is refused, on any replica — the
   rate limiter's shared store marks it), sets the app cookie — host-only, httpOnly,
   ``SameSite=Lax``, ``__Host-`` prefixed and ``Secure`` on HTTPS — and redirects to the
   path first asked for.

Requests from other origins are refused (``_from_itself``): app hosts are same-site with
each other. Every request with an app cookie checks it (signature, kind, this very host, expiry), then
that its user is active, has not changed their password since, and may still enter the environment (cached ``ADMIT_TTL`` seconds
at most), so a disabled user or a removed member is refused within seconds; open
websockets re-check the same every ``live_recheck_seconds`` and close (``proxy.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import hdrs, web
from pydantic import Field

from remotegpu.application.environments.app_access import (
    APP,
    APP_CREDENTIAL_SECONDS,
    APPS,
    TICKET,
    TICKET_SECONDS,
    AppAddress,
    AppCredentials,
    AppGrant,
    safe_next,
)
from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.shared.errors import NotFound, PermissionDenied
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Strict
from remotegpu.entrypoints.http.session import is_websocket_upgrade, origin_of

if TYPE_CHECKING:
    from remotegpu.entrypoints.config import Settings
    from remotegpu.entrypoints.http.proxy import JupyterProxy

log = logging.getLogger("remotegpu.apps")

CALLBACK_PATH = "/_remotegpu/callback"
AUTHORIZE_PATH = "/api/v1/environments/{environment_id}/apps/{app}/authorize"
APP_COOKIE = "rgpu_app"
#: Every name the app cookie may have: never forwarded upstream, never set by upstream.
APP_COOKIES = frozenset({APP_COOKIE, f"__Host-{APP_COOKIE}"})
#: How long "this user may enter this environment" is reused for requests on its app host.
ADMIT_TTL = 2.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


class AppsDomainError(ValueError):
    """The apps domain would share the console's host (start-up refuses it)."""


@dataclass(frozen=True)
class AppsConfig:
    apps_domain: str  # lower-case, no dots at either end
    console_origin: str  # scheme://host[:port], where the authorize endpoint is
    secure: bool  # HTTPS: Secure and __Host- cookies

    @property
    def app_cookie(self) -> str:
        return f"__Host-{APP_COOKIE}" if self.secure else APP_COOKIE

    def app_origin(self, address: AppAddress) -> str:
        parts = urlsplit(self.console_origin)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{address.host(self.apps_domain)}{port}"

    def app_url(self, env_id: str, app: str, path: str = "/") -> str:
        return self.app_origin(AppAddress(env_id, app)) + path

    def label_of(self, host: str) -> str | None:
        """The first label of ``host`` (no port) if it lies under the apps domain, else None."""
        suffix = "." + self.apps_domain
        if host.endswith(suffix) and len(host) > len(suffix):
            return host[: -len(suffix)]
        return None


def apps_config(settings: Settings) -> AppsConfig:
    """The apps domain and the console's origin, from settings; ``AppsDomainError`` when
    the apps domain is the console's host or a parent of it (the console would then be
    an app host, or every app host a sibling that sees its Domain cookies)."""
    domain = settings.apps_domain.strip().strip(".").lower()
    if not domain or any(not label for label in domain.split(".")):
        raise AppsDomainError("REMOTEGPU_APPS_DOMAIN must be a DNS name such as apps.example.com")
    if settings.public_url:
        console = origin_of(settings.public_url)
        if console is None:
            raise AppsDomainError("REMOTEGPU_PUBLIC_URL must be an absolute URL such as https://gpu.example.com")
    else:
        host = settings.http_host if settings.http_host not in _LOOPBACK else "127.0.0.1"
        console = f"http://{host}:{settings.http_port}"
    console_host = (urlsplit(console).hostname or "").lower()
    if console_host == domain or console_host.endswith("." + domain):
        raise AppsDomainError(
            f"REMOTEGPU_APPS_DOMAIN={domain} is the console's host ({console_host}) or a parent of it: app hosts "
            "would share the console's cookies. Use a domain of its own (apps.example.com next to gpu.example.com; "
            "the embedded default is localhost with the console on 127.0.0.1)"
        )
    return AppsConfig(domain, console, console.startswith("https://"))


def same_site_warning(config: AppsConfig) -> str | None:
    """A warning when app hosts are same-site with the console over plain HTTP (no
    ``__Host-`` cookies there: a page on an app host could plant cookies the console reads)."""
    console_host = (urlsplit(config.console_origin).hostname or "").lower()
    if config.secure or console_host in _LOOPBACK or console_host.replace(".", "").isdigit():
        return None
    console_site = ".".join(console_host.split(".")[-2:])
    apps_site = ".".join(config.apps_domain.split(".")[-2:])
    if console_site == apps_site:
        return (f"app hosts *.{config.apps_domain} are same-site with the console ({console_host}) over plain HTTP: "
                "serve both over HTTPS (REMOTEGPU_PUBLIC_URL=https://…) so the console's cookies are __Host- prefixed")
    return None


class Apps:
    """Host dispatch, the handshake and per-request admission of app hosts."""

    def __init__(self, app: web.Application, config: AppsConfig, credentials: AppCredentials, proxy: JupyterProxy) -> None:
        self._app = app
        self.config = config
        self.credentials = credentials
        self._proxy = proxy
        self._admitted: dict[tuple[str, str, str, str], tuple[float, Upstream]] = {}

    # --- app hosts ----------------------------------------------------------------------

    async def handle(self, request: web.Request, label: str) -> web.StreamResponse:
        address = AppAddress.parse(label)
        if address is None:
            return error_response(404, "not_found", "no such app")
        host = _hostname(request)
        if not self._from_itself(request, address):
            return error_response(403, "origin_mismatch", "an app host answers its own pages only")
        if request.path == CALLBACK_PATH:
            return await self._callback(request, address, host)
        grant = self._grant_from_cookies(request, host)
        if grant is None:
            return self._login_required(request, address)
        try:
            upstream = await self.admit(grant)
        except NotFound:
            return error_response(404, "not_found", "environment not found")
        extra: dict[str, str] = {}
        now = int(time.time())
        if grant.due_for_renewal(now):
            token, _ = self.credentials.issue(APP, grant.user_id, address, host, now, grant.password_tag)
            extra[hdrs.SET_COOKIE] = self._cookie_header(token)

        async def still_admitted() -> bool:
            try:
                await self.admit(grant, fresh=True)
                return True
            except (NotFound, PermissionDenied):
                return False
            except Exception:  # noqa: BLE001 - e.g. the environment stopped (Conflict): not a revocation
                log.debug("admission re-check of %s failed", grant.env_id, exc_info=True)
                return True

        if address.app == "desktop":  # the remote desktop: its page and the Guacamole tunnel (desktop.py)
            from remotegpu.entrypoints.http import desktop

            response = await desktop.serve(request, upstream, still_admitted)
            if extra and not isinstance(response, web.WebSocketResponse):
                response.headers.update(extra)
            return response
        return await self._proxy.serve(request, upstream, extra_headers=extra, still_admitted=still_admitted)

    async def admit(self, grant: AppGrant, *, fresh: bool = False) -> Upstream:
        """The upstream of the grant's app, if its user is active and may enter the
        environment now (``NotFound`` otherwise); reused for ``ADMIT_TTL`` unless ``fresh``."""
        key = (grant.user_id, grant.env_id, grant.app, grant.password_tag)
        now = time.monotonic()
        hit = self._admitted.get(key)
        if not fresh and hit is not None and hit[0] > now:
            return hit[1]
        container = self._app[CONTAINER]
        async with container.uow() as uow:
            user = await uow.users.get(grant.user_id)
        if user is None or not user.is_active or grant.password_tag != self.credentials.password_tag(user.password_hash):
            self._admitted.pop(key, None)  # disabled, or the password changed since the handshake
            raise NotFound("environment not found")
        try:  # each app names its upstream (JupyterLab's port, the desktop's VNC port)
            upstream = await container.environment_entry().app(grant.app, user, grant.env_id)
        except (NotFound, PermissionDenied):
            self._admitted.pop(key, None)
            raise NotFound("environment not found") from None
        if len(self._admitted) > 10_000:
            self._admitted.clear()
        self._admitted[key] = (now + ADMIT_TTL, upstream)
        return upstream

    def _from_itself(self, request: web.Request, address: AppAddress) -> bool:
        """Whether a request may act on the app: sent by the app's own pages, or a page
        navigation. App hosts are same-site with each other (``*.{apps_domain}``), so a
        page on one could otherwise drive another with the browser's app cookie for it
        (SameSite=Lax lets same-site requests carry it): a foreign ``Origin`` (fetch,
        form, websocket; ``null`` from a sandbox) or a same-site/cross-site request that
        is not a navigation is refused. Jupyter's own Origin check does not do this for
        requests carrying its token."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None:
            mine = {origin_of(f"{request.scheme}://{request.host}"), self.config.app_origin(address)}
            if origin_of(origin) not in mine:
                return False
        site = request.headers.get("Sec-Fetch-Site")
        if site in ("cross-site", "same-site") and request.headers.get("Sec-Fetch-Mode") != "navigate":
            return False
        return True

    def _grant_from_cookies(self, request: web.Request, host: str) -> AppGrant | None:
        """The first app cookie that verifies for this host. Every value sent is tried (a
        sibling may have planted another cookie of the same name with a Domain)."""
        now = int(time.time())
        for value in _cookie_values(request, self.config.app_cookie):
            grant = self.credentials.verify(value, kind=APP, host=host, now=now)
            if grant is not None:
                return grant
        return None

    def _login_required(self, request: web.Request, address: AppAddress) -> web.StreamResponse:
        navigation = (request.method == "GET" and not is_websocket_upgrade(request) and (
            request.headers.get("Sec-Fetch-Mode") == "navigate" or "text/html" in request.headers.get(hdrs.ACCEPT, "")))
        if not navigation:
            return error_response(401, "app_login_required", "open this app from the console to sign in to it")
        url = self.authorize_url(address, request.path_qs)
        return web.HTTPFound(url, headers={hdrs.CACHE_CONTROL: "no-store", "Referrer-Policy": "no-referrer"})

    def authorize_url(self, address: AppAddress, next_path: str = "/") -> str:
        path = AUTHORIZE_PATH.format(environment_id=address.env_id, app=address.app)
        return f"{self.config.console_origin}{path}?{urlencode({'next': next_path})}"

    async def _callback(self, request: web.Request, address: AppAddress, host: str) -> web.StreamResponse:
        now = int(time.time())
        grant = self.credentials.verify(request.query.get("ticket", ""), kind=TICKET, host=host, now=now)
        if grant is None:
            return error_response(401, "invalid_ticket", "the sign-in ticket is invalid or expired: open the app from the console again")
        limiter = self._app[CONTAINER].rate_limiter()
        if await limiter.hit(grant.consumption_key, 1, TICKET_SECONDS * 2):
            return error_response(401, "ticket_used", "this sign-in ticket was used already: open the app from the console again")
        try:
            await self.admit(grant, fresh=True)
        except NotFound:
            return error_response(404, "not_found", "environment not found")
        token, _ = self.credentials.issue(APP, grant.user_id, address, host, now, grant.password_tag)
        response = web.HTTPFound(safe_next(request.query.get("next")), headers={
            hdrs.CACHE_CONTROL: "no-store", "Referrer-Policy": "no-referrer", hdrs.SET_COOKIE: self._cookie_header(token),
        })
        return response

    def _cookie_header(self, token: str) -> str:
        parts = [f"{self.config.app_cookie}={token}", "Path=/", f"Max-Age={APP_CREDENTIAL_SECONDS}", "HttpOnly", "SameSite=Lax"]
        if self.config.secure:
            parts.append("Secure")
        return "; ".join(parts)

    # --- the console's side ---------------------------------------------------------------

    async def authorize(self, request: web.Request, env_id: str, app: str, next_path: str | None) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if principal is None:
            return web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}", headers={hdrs.CACHE_CONTROL: "no-store"})
        if app not in APPS or AppAddress.parse(f"{env_id}--{app}") is None:
            return error_response(404, "not_found", "environment not found")
        address = AppAddress(env_id.lower(), app)
        container = request.app[CONTAINER]
        try:
            await container.environment_entry().app(address.app, principal.user, address.env_id)
        except PermissionDenied:
            raise NotFound("environment not found") from None
        ticket, _ = self.credentials.issue(TICKET, principal.user.id, address, address.host(self.config.apps_domain), int(time.time()),
                                           self.credentials.password_tag(principal.user.password_hash))
        target = f"{self.config.app_origin(address)}{CALLBACK_PATH}?{urlencode({'ticket': ticket, 'next': safe_next(next_path)})}"
        return web.HTTPFound(target, headers={hdrs.CACHE_CONTROL: "no-store", "Referrer-Policy": "no-referrer"})


APPS_KEY: web.AppKey[Apps] = web.AppKey("apps", Apps)


class AuthorizeQuery(Strict):
    next: str | None = Field(None, max_length=4096, description="path on the app host to land on")


@api.get(AUTHORIZE_PATH, query=AuthorizeQuery, auth=False, tags=["environments"], errors=[404, 409])
async def authorize_app(call: Call) -> web.StreamResponse:
    """Browser handshake: a one-time ticket for the environment's app host, in a redirect there (to the login page without a session)."""
    apps = call.request.app[APPS_KEY]
    return await apps.authorize(call.request, call.path("environment_id"), call.path("app"), call.query.next)


def make_apps_middleware(apps_of: Callable[[web.Application], Apps]):
    @web.middleware
    async def apps_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        apps = apps_of(request.app)
        hostname = _hostname(request)
        label = apps.config.label_of(hostname)
        if label is not None:
            if label.endswith("--serve"):  # an inference service: the platform's router (serve.py)
                from remotegpu.entrypoints.http.serve import ROUTER_KEY

                router = request.app.get(ROUTER_KEY)
                if router is not None:
                    return await router.handle(request, label[: -len("--serve")])
            return await apps.handle(request, label)
        if hostname == apps.config.apps_domain and request.method in ("GET", "HEAD") and \
                "text/html" in request.headers.get(hdrs.ACCEPT, ""):
            # The apps domain itself (http://localhost:8080 in the embedded default) is no
            # place for the console: its cookies would be same-site with every app host.
            # Browsers go to the console's origin; API clients and agents are served as before.
            return web.HTTPFound(f"{apps.config.console_origin}{request.path_qs}")
        return await handler(request)

    return apps_middleware


def _hostname(request: web.Request) -> str:
    host = (request.host or "").lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def _cookie_values(request: web.Request, name: str) -> list[str]:
    """Every value of cookie ``name`` in the request (aiohttp's ``cookies`` keeps one)."""
    values = []
    for header in request.headers.getall(hdrs.COOKIE, []):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                values.append(value.strip().strip('"'))
    return values
