"""Ending a user's sessions: what a password change, a disable and "sign out everywhere" share."""

from __future__ import annotations

from datetime import datetime

from remotegpu.application.shared.ports import UnitOfWork
from remotegpu.domain.identity.models import User


async def end_sessions(
    uow: UnitOfWork, user: User, at: datetime, *, keep_family: str | None = None, revoke_api_tokens: bool = False
) -> int:
    """Void every access token issued so far (raise the epoch; the caller saves ``user``),
    revoke the refresh families but ``keep_family``, and optionally the API tokens.

    Returns how many API tokens were revoked. The caller commits and then invalidates
    the user cache, so the next request of any replica sees the new epoch.
    """
    user.end_sessions()
    await uow.refresh_tokens.revoke_all_for_user(user.id, at, except_family=keep_family)
    revoked = 0
    if revoke_api_tokens:
        for token in await uow.api_tokens.list_for_user(user.id):
            if token.revoked_at is None:
                token.revoked_at = at
                await uow.api_tokens.update(token)
                revoked += 1
    return revoked
