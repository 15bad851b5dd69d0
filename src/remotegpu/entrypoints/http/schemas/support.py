from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from remotegpu.domain.support.models import Priority, TicketCategory, TicketStatus
from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict


class TicketIn(Strict):
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=20_000)
    category: TicketCategory = TicketCategory.QUESTION
    priority: Priority = Priority.NORMAL
    environment_id: str | None = Field(None, min_length=1, max_length=36, description="an environment you can see; sets the workspace")
    workspace_id: str | None = Field(None, min_length=1, max_length=36, description="a workspace you are a member of")


class TicketPatchIn(Strict):
    status: TicketStatus | None = None
    priority: Priority | None = None
    category: TicketCategory | None = None
    assignee_id: str | None = Field(None, min_length=1, max_length=36, description="a member of the support team")
    unassign: bool = False


class CommentIn(Strict):
    body: str = Field(min_length=1, max_length=20_000)
    internal: bool = Field(False, description="support staff only: a note the requester never sees")
    status: TicketStatus | None = Field(None, description="support staff only: the ticket's status after this reply")


class TicketListQuery(PageQuery):
    status: str | None = Field(None, max_length=100, description="comma-separated statuses")


class QueueQuery(TicketListQuery):
    assignee: str | None = Field(None, max_length=36, description="'me', 'none' (unassigned) or a user id")
    priority: Priority | None = None


class SlaTargetOut(BaseModel):
    name: Literal["first_response", "resolution"]
    target_seconds: float = Field(description="business seconds")
    elapsed_seconds: float = Field(description="business seconds the clock ran (paused while pending)")
    done_at: datetime | None
    due_at: datetime | None = Field(description="while the clock runs: when the target is missed")
    breached: bool
    paused: bool


class TicketOut(BaseModel):
    id: str
    requester_id: str
    subject: str
    description: str
    category: TicketCategory
    priority: Priority
    status: TicketStatus
    workspace_id: str | None
    environment_id: str | None
    assignee_id: str | None
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    solved_at: datetime | None
    closed_at: datetime | None
    sla_breached: list[str] = Field(description="targets missed: first_response, resolution")


class CommentOut(BaseModel):
    id: str
    ticket_id: str
    author_id: str
    author: str = Field(description="the author's username")
    body: str
    internal: bool
    by_staff: bool
    created_at: datetime


class AttachmentQuery(Strict):
    filename: str = Field(min_length=1, max_length=255, description="the file's name as shown and downloaded")
    content_type: str = Field(min_length=1, max_length=100, description="the file's type: images, text, logs, JSON/YAML, "
                                                                        "PDF, zip/gzip/tar (others: 422 attachment_type)")
    comment_id: str | None = Field(None, max_length=36, description="your comment it belongs to (default: the ticket itself, "
                                                                    "requester only); on an internal note it is internal too")


class AttachmentOut(BaseModel):
    id: str
    ticket_id: str
    comment_id: str | None
    uploader_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    internal: bool = Field(description="on an internal note: support staff only")
    created_at: datetime


class TicketDetailOut(TicketOut):
    requester: str
    assignee: str | None
    comments: list[CommentOut]
    attachments: list[AttachmentOut]
    sla: list[SlaTargetOut]
    staff_view: bool = Field(description="the caller works this ticket as support staff (sees internal notes)")
    allowed_statuses: list[TicketStatus] = Field(description="statuses support staff may move it to")


class SupportMeOut(BaseModel):
    is_staff: bool
    business_hours: str


class AgentOut(BaseModel):
    id: str
    username: str
    display_name: str
