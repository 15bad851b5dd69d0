from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

import jwt

from remotegpu.application.identity.ports import AccessClaims


class JwtAccessTokenIssuer:
    """HS256 access tokens: stateless and short-lived. Revocation: the token carries the
    user's session epoch (``sep``) and its login (``sid``, the refresh-token family);
    ``AuthService.authenticate`` refuses a token whose epoch is behind the user's.

    Verified tokens are remembered (token → claims, expiry) in a bounded LRU: a
    client sends the same token on every request for its lifetime, and checking the
    signature again is a third of a cached request's CPU. Expiry is still checked
    on every call, against the injected clock.
    """

    def __init__(self, secret_key: str, ttl_seconds: int = 900, issuer: str = "remotegpu", cache_size: int = 10_000):
        self._key = secret_key
        self.ttl_seconds = ttl_seconds
        self._issuer = issuer
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[AccessClaims, float]] = OrderedDict()

    def issue(self, user_id: str, now: datetime, *, session_epoch: int = 0, session_id: str | None = None) -> str:
        ts = int(now.timestamp())
        claims = {"sub": user_id, "iat": ts, "exp": ts + self.ttl_seconds, "iss": self._issuer, "typ": "access", "sep": session_epoch}
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, now: datetime) -> str | None:
        claims = self.verify_claims(token, now)
        return claims.user_id if claims else None

    def verify_claims(self, token: str, now: datetime) -> AccessClaims | None:
        hit = self._verified.get(token)
        if hit is None:
            hit = self._decode(token)
            if hit is None:
                return None
            self._verified[token] = hit
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        claims, expires = hit
        if expires <= now.timestamp():
            self._verified.pop(token, None)
            return None
        return claims

    def _decode(self, token: str) -> tuple[AccessClaims, float] | None:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], issuer=self._issuer,
                options={"require": ["exp", "sub", "iat"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access":
            return None
        epoch, sid = claims.get("sep", 0), claims.get("sid")
        if not isinstance(epoch, int) or not (sid is None or isinstance(sid, str)):
            return None
        return AccessClaims(user_id=str(claims["sub"]), session_epoch=epoch, session_id=sid), float(claims["exp"])
