"""Long-lived connections re-check what admitted them: revocation reaches open ones.

The web terminal and the event stream are authorised once, by their opening request;
without this they would outlive a disabled account, a revoked API token, a password
change or a removed membership for as long as the browser keeps them open. Every
``live_recheck_seconds`` (2.5 s by default) they ask ``AdmissionCheck.holds``:

* the same authentication again, with the credential that opened them
  (``AuthService.authenticate``): the account active, an API token not revoked, an
  access token not invalidated (whatever the identity service checks there, such as a
  session epoch after a password change, applies here too);
* whatever the credential, the account active and its password unchanged since the
  connection opened (an access token that merely *expired* — they live minutes, a
  terminal may stay open for hours — cannot be re-run; this still holds for it);
* plus whatever the connection adds (the terminal: may this user still enter the
  environment).

Proxied app websockets do the same through ``apps.py`` (app cookie → user active and
still allowed in). Transient failures (the database briefly away) do not close anything.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from remotegpu.domain.shared.errors import NotFound, PermissionDenied, Unauthenticated
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL
from remotegpu.entrypoints.http.session import CREDENTIAL

log = logging.getLogger("remotegpu.liveness")

Extra = Callable[[], Awaitable[bool]]


@dataclass
class AdmissionCheck:
    request: web.Request
    extra: Extra | None = None

    @property
    def interval(self) -> float:
        return self.request.app[CONTAINER].settings().live_recheck_seconds

    async def holds(self) -> bool:
        """False once what admitted the connection no longer holds (True on doubt)."""
        container = self.request.app[CONTAINER]
        principal = self.request[PRINCIPAL]
        credential = self.request.get(CREDENTIAL)
        auth = container.auth_service()
        try:
            if credential and not _expired_access_token(credential):
                try:
                    again = await auth.authenticate(credential)
                except Unauthenticated:
                    if not _expired_access_token(credential):  # (it may have expired just now)
                        return False
                    again = None
                if again is not None and again.user.id != principal.user.id:
                    return False
            async with container.uow() as uow:
                user = await uow.users.get(principal.user.id)
            if user is None or not user.is_active or user.password_hash != principal.user.password_hash:
                return False  # disabled, deleted, or the password changed since the connection opened
            if self.extra is not None and not await self.extra():
                return False
        except (NotFound, PermissionDenied):
            return False
        except Exception:  # noqa: BLE001 - a failing check is no revocation
            log.warning("re-checking a live connection failed; keeping it open", exc_info=True)
        return True

    async def until_revoked(self) -> None:
        """Returns once the admission no longer holds (never, while it does)."""
        while True:
            await asyncio.sleep(self.interval)
            if not await self.holds():
                return


def _expired_access_token(credential: str) -> bool:
    """Whether ``credential`` is a JWT access token past its ``exp`` (it was verified when
    the connection opened; only its expiry is read here)."""
    parts = credential.split(".")
    if len(parts) != 3:
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(claims["exp"]) <= time.time()
    except (ValueError, KeyError, TypeError):
        return False
