"""Opaque secrets (API tokens, refresh tokens, invite codes) and how they are stored."""

from __future__ import annotations

import hashlib
import secrets

API_TOKEN_PREFIX = "rgp_"
REFRESH_TOKEN_PREFIX = "rgr_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Secrets are 256 random bits: a fast hash is enough (no dictionary to attack),
    # and it keeps token lookups to one indexed query.
    return hashlib.sha256(secret.encode()).hexdigest()
