from __future__ import annotations

from datetime import datetime

import jwt


class JwtAccessTokenIssuer:
    """HS256 access tokens: stateless, short-lived; revocation is by disabling the user."""

    def __init__(self, secret_key: str, ttl_seconds: int = 900, issuer: str = "remotegpu"):
        self._key = secret_key
        self.ttl_seconds = ttl_seconds
        self._issuer = issuer

    def issue(self, user_id: str, now: datetime) -> str:
        ts = int(now.timestamp())
        return jwt.encode(
            {"sub": user_id, "iat": ts, "exp": ts + self.ttl_seconds, "iss": self._issuer, "typ": "access"},
            self._key,
            algorithm="HS256",
        )

    def verify(self, token: str, now: datetime) -> str | None:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], issuer=self._issuer,
                options={"require": ["exp", "sub", "iat"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        # Expiry is checked against the injected clock, so tests can move time.
        if claims.get("typ") != "access" or claims["exp"] <= now.timestamp():
            return None
        return str(claims["sub"])
