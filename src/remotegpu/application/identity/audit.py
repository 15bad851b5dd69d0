from __future__ import annotations

from typing import Any

from remotegpu.application.shared.ports import Clock, UnitOfWork
from remotegpu.domain.identity.models import AuditEvent
from remotegpu.domain.shared.ids import new_id


async def record(
    uow: UnitOfWork,
    clock: Clock,
    action: str,
    *,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    ip: str | None = None,
    **details: Any,
) -> None:
    """Add a security event to the audit log inside the caller's transaction."""
    await uow.audit.add(
        AuditEvent(
            id=new_id(),
            action=action,
            created_at=clock.now(),
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            ip=ip,
            details=details,
        )
    )
