from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

import jwt


class JwtAccessTokenIssuer:
    """HS256 access tokens: stateless, short-lived; revocation is by disabling the user.

    Verified tokens are remembered (token → subject, expiry) in a bounded LRU: a
    client sends the same token on every request for its lifetime, and checking the
    signature again is a third of a cached request's CPU. Expiry is still checked
    on every call, against the injected clock.
    """

    def __init__(self, secret_key: str, ttl_seconds: int = 900, issuer: str = "remotegpu", cache_size: int = 10_000):
        self._key = secret_key
        self.ttl_seconds = ttl_seconds
        self._issuer = issuer
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, user_id: str, now: datetime) -> str:
        ts = int(now.timestamp())
        return jwt.encode(
            {"sub": user_id, "iat": ts, "exp": ts + self.ttl_seconds, "iss": self._issuer, "typ": "access"},
            self._key,
            algorithm="HS256",
        )

    def verify(self, token: str, now: datetime) -> str | None:
        hit = self._verified.get(token)
        if hit is None:
            hit = self._decode(token)
            if hit is None:
                return None
            self._verified[token] = hit
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        subject, expires = hit
        if expires <= now.timestamp():
            self._verified.pop(token, None)
            return None
        return subject

    def _decode(self, token: str) -> tuple[str, float] | None:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], issuer=self._issuer,
                options={"require": ["exp", "sub", "iat"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access":
            return None
        return str(claims["sub"]), float(claims["exp"])
