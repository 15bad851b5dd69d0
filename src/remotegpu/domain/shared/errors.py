"""Domain exceptions. The HTTP layer maps each kind to a status in one place.

Every error carries a stable machine-readable ``code`` (what clients branch on),
a human ``message`` and optional ``details``.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class NotFound(DomainError):
    """Unknown, or belongs to someone else: both look the same to the caller."""

    code = "not_found"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class PermissionDenied(DomainError):
    """The caller can see the object but may not do this to it."""

    code = "permission_denied"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid_input"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})
        self.retry_after = retry_after


class QuotaExceeded(DomainError):
    code = "quota_exceeded"


class Unavailable(DomainError):
    """Something the platform depends on (e.g. the LDAP directory) cannot be reached now."""

    code = "unavailable"
