"""Who may use an environment's web app on its own origin, and the credentials that say so.

Each web app of an environment (JupyterLab today; TensorBoard, a desktop later) is served
from a host of its own, ``{env_id}--{app}.{apps_domain}``: what the environment's owner
serves there (they are root in the container) can never read or use the console's
session, nor another environment's app. That host authenticates with credentials of its
own, minted by the platform for one user, one environment and one app:

* a **ticket**: the console's authorize endpoint gives one, after checking the console
  session and the user's right to enter the environment, in a redirect to the app host.
  It lives ``TICKET_SECONDS`` and is spent on first use (``consumption_key``).
* the **app credential**: the app host's callback trades the ticket for it and keeps it
  in a host-only httpOnly cookie. It lives ``APP_CREDENTIAL_SECONDS`` (renewed while in
  use) and is bound to that exact host: useless against the API (which never reads it)
  and against every other environment's host.

Both are the same signed claim (HMAC-SHA256 under a key derived from the platform
secret), told apart by ``kind``, and carry a tag of the user's password hash at the
handshake (``password_tag``): a password change ends every app credential of that user
at its next check, renewals included. Stateless: any replica verifies them. They only say who
was let in; whether that user may still enter is checked again on every request (the
caller caches that for a few seconds at most), so revocation does not wait for expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

#: The web apps an environment may serve; each one is a host of its own.
APPS = frozenset({"jupyter", "desktop"})
#: Between the environment id and the app name in the host's first label.
SEPARATOR = "--"
TICKET_SECONDS = 30
APP_CREDENTIAL_SECONDS = 3600
#: An app credential older than this is replaced, on a request it admits, by a fresh one.
RENEW_AFTER_SECONDS = 600

TICKET = "ticket"
APP = "app"

_ENV_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class AppAddress:
    """One app of one environment: the first label of its host."""

    env_id: str
    app: str

    @property
    def label(self) -> str:
        return f"{self.env_id}{SEPARATOR}{self.app}"

    def host(self, apps_domain: str) -> str:
        return f"{self.label}.{apps_domain}"

    @classmethod
    def parse(cls, label: str) -> AppAddress | None:
        """The address a host label names, or None (not an app host of ours)."""
        env_id, sep, app = label.lower().rpartition(SEPARATOR)
        if not sep or app not in APPS or not _ENV_ID.match(env_id):
            return None
        return cls(env_id, app)


@dataclass(frozen=True)
class AppGrant:
    """A ticket or app credential, verified."""

    kind: str
    user_id: str
    env_id: str
    app: str
    host: str  # the app host (lower-case, no port) it is good for
    issued_at: int
    expires_at: int
    nonce: str
    password_tag: str = ""

    @property
    def address(self) -> AppAddress:
        return AppAddress(self.env_id, self.app)

    @property
    def consumption_key(self) -> str:
        """Marks a ticket spent (kept by the caller at least ``TICKET_SECONDS``)."""
        return f"app-ticket:{self.nonce}"

    def due_for_renewal(self, now: int) -> bool:
        return self.kind == APP and now - self.issued_at >= RENEW_AFTER_SECONDS


class AppCredentials:
    """Signs and verifies tickets and app credentials."""

    def __init__(self, secret: str) -> None:
        # A key of its own: nothing else the platform signs verifies as an app grant.
        self._key = hashlib.sha256(b"remotegpu-app-credentials:" + secret.encode()).digest()

    def password_tag(self, password_hash: str) -> str:
        """A short keyed digest of the user's password hash (which never leaves the server)."""
        return _b64(hmac.new(self._key, b"password:" + password_hash.encode(), hashlib.sha256).digest()[:12])

    def issue(
        self, kind: str, user_id: str, address: AppAddress, host: str, now: int, password_tag: str = "",
    ) -> tuple[str, AppGrant]:
        life = TICKET_SECONDS if kind == TICKET else APP_CREDENTIAL_SECONDS
        grant = AppGrant(kind, user_id, address.env_id, address.app, host.lower(), now, now + life, secrets.token_urlsafe(16),
                         password_tag)
        claims = {"k": grant.kind, "u": grant.user_id, "e": grant.env_id, "a": grant.app, "h": grant.host,
                  "i": grant.issued_at, "x": grant.expires_at, "n": grant.nonce, "p": grant.password_tag}
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._sign(payload)}", grant

    def verify(self, token: str, *, kind: str, host: str, now: int) -> AppGrant | None:
        """The grant if ``token`` is genuine, of ``kind``, for ``host`` and unexpired; else None."""
        payload, dot, signature = token.partition(".")
        if not dot or len(token) > 2048 or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            c = json.loads(_unb64(payload))
            grant = AppGrant(str(c["k"]), str(c["u"]), str(c["e"]), str(c["a"]), str(c["h"]), int(c["i"]), int(c["x"]), str(c["n"]),
                             str(c.get("p", "")))
        except (ValueError, KeyError, TypeError):
            return None
        address = AppAddress.parse(host.split(".", 1)[0])
        if grant.kind != kind or grant.host != host.lower() or address != grant.address or now >= grant.expires_at:
            return None
        return grant

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def safe_next(path: str | None) -> str:
    """Where to send the browser after the handshake: a path on the app host itself, never
    another host (``//evil``, ``/\\evil``, a scheme) — an open redirect otherwise."""
    if not path or not path.startswith("/") or path.startswith("//") or path.startswith("/\\") or len(path) > 4096:
        return "/"
    if any(ord(ch) < 0x21 for ch in path):
        return "/"
    return path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
