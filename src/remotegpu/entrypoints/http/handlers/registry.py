"""The registry's token realm (Docker registry v2 token auth): the platform issues the
short-lived tokens its registry accepts (application/images/registry_access.py).

Authenticated by a host's registry credential (HTTP Basic: host id + the credential its
agent got with its last heartbeat reply) — never by a user's token: users get no registry
access. Without token auth configured (``REMOTEGPU_REGISTRY_TOKEN_KEY``) it answers 404.
"""

from __future__ import annotations

import base64
import binascii

from remotegpu.domain.shared.errors import NotFound, Unauthenticated
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.images import RegistryTokenOut, RegistryTokenQuery

TAGS = ["images"]


def _basic(call: Call) -> tuple[str, str]:
    scheme, _, value = call.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated("send a host's registry credential (HTTP Basic)", code="invalid_registry_credential")
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("bad Basic credentials", code="invalid_registry_credential") from None
    if not sep:
        raise Unauthenticated("bad Basic credentials", code="invalid_registry_credential")
    return username, password


@api.get("/api/v1/registry/token", query=RegistryTokenQuery, response=RegistryTokenOut, auth=False, tags=TAGS,
         errors=[401, 404, 422])
async def registry_token(call: Call) -> RegistryTokenOut:
    """A short-lived registry token (Docker's token auth) for what of the scopes asked the
    calling host may pull or push now (HTTP Basic: host id + its registry credential)."""
    username, password = _basic(call)
    access = call.container.registry_access()
    if access is None:
        raise NotFound("the registry's token auth is not configured on this server", code="registry_token_not_configured")
    q: RegistryTokenQuery = call.query
    grant = await access.token(username, password, q.service, call.request.query.getall("scope", []))
    return RegistryTokenOut(token=grant.token, access_token=grant.token, expires_in=grant.expires_in,
                            issued_at=grant.issued_at)
