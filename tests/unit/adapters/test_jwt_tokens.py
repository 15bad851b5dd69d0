from datetime import datetime, timedelta, timezone

import jwt

from remotegpu.adapters.security.jwt_tokens import JwtAccessTokenIssuer
from remotegpu.application.identity.ports import AccessClaims

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_round_trip_and_expiry_against_the_given_clock():
    issuer = JwtAccessTokenIssuer("k" * 32, ttl_seconds=60)
    token = issuer.issue("user-1", NOW)
    assert issuer.verify(token, NOW) == "user-1"
    assert issuer.verify(token, NOW + timedelta(seconds=59)) == "user-1"  # from the cache
    assert issuer.verify(token, NOW + timedelta(seconds=60)) is None


def test_tokens_signed_with_another_key_or_tampered_are_refused():
    issuer = JwtAccessTokenIssuer("k" * 32)
    other = JwtAccessTokenIssuer("x" * 32).issue("user-1", NOW)
    assert issuer.verify(other, NOW) is None
    token = issuer.issue("user-1", NOW)
    assert issuer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), NOW) is None
    forged = jwt.encode({"sub": "admin", "iat": 0, "exp": 2**40, "iss": "remotegpu", "typ": "refresh"}, "k" * 32, algorithm="HS256")
    assert issuer.verify(forged, NOW) is None


def test_cache_is_bounded():
    issuer = JwtAccessTokenIssuer("k" * 32, cache_size=3)
    tokens = [issuer.issue(f"u{i}", NOW) for i in range(5)]
    assert [issuer.verify(t, NOW) for t in tokens] == [f"u{i}" for i in range(5)]
    assert len(issuer._verified) == 3


def test_the_token_carries_the_session_epoch_and_login():
    issuer = JwtAccessTokenIssuer("k" * 32)
    token = issuer.issue("user-1", NOW, session_epoch=3, session_id="family-9")
    claims = issuer.verify_claims(token, NOW)
    assert (claims.user_id, claims.session_epoch, claims.session_id) == ("user-1", 3, "family-9")
    assert issuer.verify(token, NOW) == "user-1"
    # Tokens issued before epochs existed read as epoch 0 with no login.
    old = jwt.encode({"sub": "u", "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60, "iss": "remotegpu", "typ": "access"}, "k" * 32)
    assert issuer.verify_claims(old, NOW) == AccessClaims("u", 0, None)
    forged = jwt.encode({"sub": "u", "iat": 1, "exp": int(NOW.timestamp()) + 60, "iss": "remotegpu", "typ": "access", "sep": "9"}, "k" * 32)
    assert issuer.verify_claims(forged, NOW) is None
