"""Sign-in with an OpenID Connect provider: authorization code flow with PKCE (S256).

The platform is a confidential client (``client_secret_basic``). ``begin`` makes the
provider's authorization URL with a fresh ``state``, ``nonce`` and PKCE verifier (the
caller keeps them in a short-lived, httpOnly cookie bound to the browser); ``finish``
trades the code for tokens and verifies the ID token: signature against the provider's
JWKS, issuer, audience, expiry and the nonce. Its claims become a DirectoryEntry
(subject, username, email, name, groups) for the identity context.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import jwt

from remotegpu.application.identity.ports import DirectoryEntry
from remotegpu.domain.shared.errors import Unauthenticated, Unavailable

DISCOVERY_TTL_SECONDS = 3600


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str  # {public_url}/api/v1/auth/oidc/callback
    scopes: str = "openid email profile"
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    timeout_seconds: float = 10.0
    post_logout_redirect_uri: str = ""  # {public_url}/login: where the provider sends the browser after logout


@dataclass(frozen=True)
class Pending:
    """What the browser carries between ``begin`` and ``finish`` (in a sealed cookie)."""

    state: str
    nonce: str
    verifier: str

    def dumps(self) -> str:
        return json.dumps([self.state, self.nonce, self.verifier])

    @classmethod
    def loads(cls, text: str) -> "Pending":
        state, nonce, verifier = json.loads(text)
        return cls(str(state), str(nonce), str(verifier))


class OidcClient:
    def __init__(self, settings: OidcSettings):
        self._s = settings
        self._meta: dict | None = None
        self._meta_at = 0.0
        self._jwks: dict | None = None

    async def begin(self) -> tuple[str, Pending]:
        meta = await self._metadata()
        pending = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(pending.verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({
            "response_type": "code", "client_id": self._s.client_id, "redirect_uri": self._s.redirect_uri,
            "scope": self._s.scopes, "state": pending.state, "nonce": pending.nonce,
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
        return f"{meta['authorization_endpoint']}?{query}", pending

    async def finish(self, code: str, state: str, pending: Pending) -> DirectoryEntry:
        entry, _ = await self.finish_with_token(code, state, pending)
        return entry

    async def finish_with_token(self, code: str, state: str, pending: Pending) -> tuple[DirectoryEntry, str]:
        """``finish``, and the verified ID token itself (the hint for logout)."""
        if not secrets.compare_digest(state, pending.state):
            raise Unauthenticated("the sign-in answer does not belong to this browser; start again", code="oidc_state_mismatch")
        meta = await self._metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self._s.redirect_uri,
                "code_verifier": pending.verifier}
        auth = aiohttp.BasicAuth(self._s.client_id, self._s.client_secret)
        tokens = await self._post(meta["token_endpoint"], form, auth)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("the identity provider answered no ID token", code="oidc_failed")
        claims = await self._verify(id_token, meta)
        if not secrets.compare_digest(str(claims.get("nonce", "")), pending.nonce):
            raise Unauthenticated("the ID token is not for this sign-in (nonce)", code="oidc_failed")
        if "userinfo_endpoint" in meta and isinstance(tokens.get("access_token"), str):
            # Providers put profile claims in the ID token or only in userinfo: merge both.
            info = await self._get(meta["userinfo_endpoint"], tokens["access_token"])
            if info.get("sub") == claims.get("sub"):
                claims = {**info, **claims}
        groups = claims.get(self._s.groups_claim) or []
        email = claims.get("email") if claims.get("email_verified", True) else None
        return DirectoryEntry(
            external_id=f"{claims['iss']}#{claims['sub']}",
            username=str(claims.get(self._s.username_claim) or email or claims["sub"]),
            email=str(email or ""),
            display_name=str(claims.get("name") or ""),
            groups=frozenset(str(g) for g in groups) if isinstance(groups, list) else frozenset(),
        ), id_token

    async def end_session_url(self, id_token: str | None) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the provider's
        ``end_session_endpoint`` with the ID token as hint and the console's login page to
        come back to; None when the provider offers no such endpoint."""
        meta = await self._metadata()
        endpoint = meta.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            return None
        params = {"client_id": self._s.client_id}
        if id_token:
            params["id_token_hint"] = id_token
        if self._s.post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = self._s.post_logout_redirect_uri
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    async def _verify(self, id_token: str, meta: dict) -> dict:
        try:
            header = jwt.get_unverified_header(id_token)
            key = await self._key(header.get("kid"), meta)
            return jwt.decode(id_token, key=key, algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                              audience=self._s.client_id, issuer=meta["issuer"],
                              options={"require": ["exp", "iat", "sub", "iss", "aud"]}, leeway=30)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the ID token is not valid: {exc}", code="oidc_failed") from exc

    async def _key(self, kid: str | None, meta: dict):
        for refresh in (False, True):  # a key we have not seen: the provider rotated keys
            if self._jwks is None or refresh:
                self._jwks = await self._get(meta["jwks_uri"])
            for jwk in self._jwks.get("keys", []):
                if kid is None or jwk.get("kid") == kid:
                    return jwt.PyJWK(jwk).key
        raise Unauthenticated("the ID token is signed with an unknown key", code="oidc_failed")

    async def _metadata(self) -> dict:
        if self._meta is None or time.monotonic() - self._meta_at > DISCOVERY_TTL_SECONDS:
            meta = await self._get(self._s.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if meta.get("issuer") != self._s.issuer.rstrip("/") and meta.get("issuer") != self._s.issuer:
                raise Unavailable("the identity provider's metadata names another issuer", code="oidc_unavailable")
            self._meta, self._meta_at = meta, time.monotonic()
        return self._meta

    async def _get(self, url: str, bearer: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return await self._call("GET", url, headers=headers)

    async def _post(self, url: str, form: dict, auth: aiohttp.BasicAuth) -> dict:
        return await self._call("POST", url, data=form, auth=auth)

    async def _call(self, method: str, url: str, **kw) -> dict:
        try:
            timeout = aiohttp.ClientTimeout(total=self._s.timeout_seconds)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.request(method, url, **kw) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status >= 400:
                        raise Unauthenticated(f"the identity provider refused: {body.get('error', resp.status)}",
                                              code="oidc_failed")
                    return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable("the identity provider cannot be reached; try again later", code="oidc_unavailable") from exc
