from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from remotegpu.entrypoints.http.schemas.common import PageQuery


class SshSessionQuery(PageQuery):
    environment_id: str | None = Field(None, max_length=64)
    user_id: str | None = Field(None, max_length=64)


class AllSshSessionQuery(SshSessionQuery):
    workspace_id: str | None = Field(None, max_length=64)


class SshSessionOut(BaseModel):
    id: str
    user_id: str
    username: str
    environment_id: str
    environment_name: str
    workspace_id: str
    kind: Literal["session", "jump"] = Field(
        description="session: ssh <environment id>@gateway (relayed by the gateway); jump: ssh -J (a TCP relay to the "
        "environment's sshd, end to end encrypted)",
    )
    client_address: str = Field(description="where the SSH client connected from")
    key_fingerprint: str = Field(description="SHA256 fingerprint of the registered key used")
    started_at: datetime
    ended_at: datetime | None = Field(None, description="null while the session lasts")
    duration_seconds: float | None
    end_reason: str = Field(description="closed, revoked (access was withdrawn mid-session), gateway_stopped; '' while open")
    channels: list[str] = Field(description="what ran, first ones: shell, exec, sftp, forward:HOST:PORT")
    recorded: bool = Field(False, description="its terminal output was recorded: GET .../{id}/recording (platform admins)")
