"""Support tickets: requesters open and answer them, the support team works them.

Who sees a ticket: its requester and the support team (platform admins and users an
admin added to the team); to anyone else it does not exist (404). Internal notes are
never shown to the requester, never notified to them and never sent by webhook.

Everything that changes a ticket is written with an optimistic version check; the
automations (``sweep``) and two agents acting at once cannot overwrite each other
(the loser gets 409 ``ticket_changed`` and reloads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import hashlib
from typing import Any, AsyncIterator

from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.storage.ports import ObjectStore
from remotegpu.application.support.ports import Notifier, Publish, TicketRepository
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.identity.models import User
from remotegpu.domain.notifications.models import Audience, Category, Message, Severity
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.support import messages as msg
from remotegpu.domain.support.models import (
    ACTIVE,
    ATTACHMENT_TYPES,
    CLOCK_RUNS,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_SUBJECT,
    MAX_TEXT,
    Attachment,
    Comment,
    Priority,
    Ticket,
    TicketCategory,
    TicketStatus,
    attachment_key,
    check_filename,
    check_text,
)
from remotegpu.domain.support.sla import RESOLUTION, SlaPolicy, Target
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)
_EXCERPT = 300
_SWEEP_BATCH = 1000


@dataclass(frozen=True)
class SupportSettings:
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    close_solved_after: timedelta = timedelta(days=4)
    remind_pending_after: timedelta = timedelta(days=3)
    solve_pending_after: timedelta = timedelta(days=7)
    retention: timedelta | None = None  # closed tickets (with comments and attachments) are deleted after this; None: kept
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    comments: list[Comment]
    sla: list[Target]
    attachments: list[Attachment]
    staff: bool  # the caller works this ticket as support staff (sees notes, may change it)


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


@dataclass
class TicketService:
    uow: UnitOfWorkFactory  # users, environments, workspaces (reads)
    repo: TicketRepository
    clock: Clock
    notifier: Notifier | None = None
    publish: Publish | None = None
    settings: SupportSettings = field(default_factory=SupportSettings)
    objects: ObjectStore | None = None  # attachments' bytes (None: no attachments)

    # --- who is who -----------------------------------------------------------------

    async def is_staff(self, user: User) -> bool:
        return user.is_admin or await self.repo.is_agent(user.id)

    async def _require_staff(self, user: User) -> None:
        if not await self.is_staff(user):
            raise PermissionDenied("only the support team may do this", code="support_role_required")

    async def _visible(self, actor: User, ticket_id: str) -> tuple[Ticket, bool]:
        """(ticket, whether the actor works it as staff); NotFound for anyone but its requester and staff."""
        ticket = await self.repo.get(ticket_id)
        if ticket is None:
            raise NotFound("ticket not found")
        if ticket.requester_id == actor.id:
            return ticket, False
        if await self.is_staff(actor):
            return ticket, True
        raise NotFound("ticket not found")

    async def _save(self, ticket: Ticket, comments: list[Comment] | None = None) -> None:
        if not await self.repo.save(ticket, comments):
            raise Conflict("the ticket was changed meanwhile; reload it and try again", code="ticket_changed")

    # --- requesters ------------------------------------------------------------------

    async def create(self, actor: User, *, subject: str, description: str, category: str = "question",
                     priority: str = "normal", environment_id: str | None = None,
                     workspace_id: str | None = None) -> Ticket:
        subject = check_text(subject, "subject", MAX_SUBJECT)
        description = check_text(description, "description", MAX_TEXT)
        cat, prio = _enum(TicketCategory, category, "category"), _enum(Priority, priority, "priority")
        async with self.uow() as uow:
            if environment_id is not None:
                env = await uow.environments.get(environment_id)
                if env is None:
                    raise NotFound("environment not found", details={"field": "environment_id"})
                try:
                    await authorize(uow, actor, env.workspace_id, Role.VIEWER)
                except NotFound:
                    raise NotFound("environment not found", details={"field": "environment_id"}) from None
                if workspace_id is not None and workspace_id != env.workspace_id:
                    raise InvalidInput("the environment is not in that workspace", details={"field": "workspace_id"})
                workspace_id = env.workspace_id
            elif workspace_id is not None:
                await authorize(uow, actor, workspace_id, Role.VIEWER)
        now = self.clock.now()
        ticket = Ticket(id=new_id(), requester_id=actor.id, subject=subject, description=description, category=cat,
                        priority=prio, created_at=now, updated_at=now, workspace_id=workspace_id,
                        environment_id=environment_id, sla_running_since=now)
        await self.repo.add(ticket)
        await self._tell([self._message(ticket, "support.ticket_created", self._team(ticket), Severity.INFO,
                                        f"ticket:{ticket.id}:created", requester=actor.username)])
        await self._event(ticket, msg.TICKET_CREATED)
        return ticket

    async def mine(self, actor: User, *, statuses: list[TicketStatus] | None, limit: int, offset: int) -> tuple[list[Ticket], int]:
        return await self.repo.list(requester_id=actor.id, statuses=statuses, limit=limit, offset=offset)

    async def get(self, actor: User, ticket_id: str) -> TicketView:
        ticket, staff = await self._visible(actor, ticket_id)
        comments = await self.repo.comments(ticket.id, include_internal=staff)
        attachments = await self.repo.attachments(ticket.id, include_internal=staff)
        return TicketView(ticket, comments, self.settings.sla.status(ticket, self.clock.now()), attachments, staff)

    # --- attachments (bytes through the object store port) ---------------------------
    async def attach(self, actor: User, ticket_id: str, *, filename: str, content_type: str, chunks: AsyncIterator[bytes],
                     comment_id: str | None = None, declared_size: int | None = None) -> Attachment:
        """A file on the ticket (given with it) or on one of the actor's own comments on it
        (an internal note's file is internal too). Only the listed types, at most
        ``max_attachment_bytes`` each and MAX_ATTACHMENTS a ticket; not on a closed ticket."""
        ticket, staff = await self._visible(actor, ticket_id)
        if self.objects is None:
            raise Conflict("attachments need an object store, and none is configured", code="attachments_unavailable")
        if ticket.status is TicketStatus.CLOSED:
            raise Conflict("this ticket is closed; open a new one", code="ticket_closed")
        name = check_filename(filename)
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype not in ATTACHMENT_TYPES:
            raise InvalidInput(f"files of type {ctype or '(none)'} cannot be attached",
                               code="attachment_type", details={"field": "content_type", "allowed": sorted(ATTACHMENT_TYPES)})
        limit = self.settings.max_attachment_bytes
        if declared_size is not None and declared_size > limit:
            raise InvalidInput("the file is too large", code="attachment_too_large", details={"max_bytes": limit})
        public = True
        if comment_id is not None:
            comment = next((c for c in await self.repo.comments(ticket.id, include_internal=True) if c.id == comment_id), None)
            if comment is None or comment.author_id != actor.id:
                raise NotFound("comment not found", details={"field": "comment_id"})
            public = comment.public
        elif ticket.requester_id != actor.id:
            raise PermissionDenied("support staff attach files to their replies", code="support_role_required")
        if len(await self.repo.attachments(ticket.id, include_internal=True)) >= MAX_ATTACHMENTS:
            raise Conflict(f"a ticket holds at most {MAX_ATTACHMENTS} files", code="too_many_attachments")
        attachment_id = new_id()
        key = attachment_key(ticket.id, attachment_id)
        digest, seen = hashlib.sha256(), 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal seen
            async for chunk in chunks:
                seen += len(chunk)
                if seen > limit:
                    raise InvalidInput("the file is too large", code="attachment_too_large", details={"max_bytes": limit})
                digest.update(chunk)
                yield chunk

        try:
            size = await self.objects.put(key, counted())
        except BaseException:
            await self.objects.delete(key)  # nothing half-written stays behind
            raise
        if size == 0:
            await self.objects.delete(key)
            raise InvalidInput("the file is empty", code="attachment_empty")
        a = Attachment(attachment_id, ticket.id, comment_id, actor.id, name, ctype, size, digest.hexdigest(), public,
                       self.clock.now())
        try:
            await self.repo.add_attachment(a)
        except BaseException:
            await self.objects.delete(key)
            raise
        return a

    async def attachment(self, actor: User, ticket_id: str, attachment_id: str) -> tuple[Attachment, AsyncIterator[bytes]]:
        """An attachment and its bytes, for those who see the ticket (internal ones: staff only); else NotFound."""
        ticket, staff = await self._visible(actor, ticket_id)
        a = await self.repo.attachment(ticket.id, attachment_id)
        if a is None or (not a.public and not staff) or self.objects is None:
            raise NotFound("attachment not found")
        return a, await self.objects.get(a.key)

    async def reply(self, actor: User, ticket_id: str, body: str, *, internal: bool = False,
                    status: str | None = None) -> Comment:
        """A public reply or (staff only) an internal note; staff may set the status with it."""
        ticket, staff = await self._visible(actor, ticket_id)
        body = check_text(body, "body", MAX_TEXT)
        if ticket.status is TicketStatus.CLOSED:
            raise Conflict("this ticket is closed; open a new one", code="ticket_closed")
        if not staff and (internal or status is not None):
            raise PermissionDenied("only the support team may add internal notes or set the status",
                                   code="support_role_required")
        now = self.clock.now()
        before = ticket.status
        comment = Comment(new_id(), ticket.id, actor.id, body, public=not internal, by_staff=staff, created_at=now)
        sla = self.settings.sla
        if staff:
            target = _enum(TicketStatus, status, "status") if status is not None else None
            if not internal:
                sla.record_first_response(ticket, now)
                if target is None and ticket.status is TicketStatus.NEW:
                    target = TicketStatus.OPEN
            if target is not None:
                self._agent_move(ticket, target, now)
        else:  # the requester answers: the ball is with support again
            if ticket.status in (TicketStatus.PENDING, TicketStatus.SOLVED):
                ticket.move(TicketStatus.OPEN, now, sla.elapsed(ticket, now))
        ticket.updated_at = now
        await self._save(ticket, [comment])
        messages: list[Message] = []
        if comment.public and staff:
            messages.append(self._message(ticket, "support.reply", Audience(user_ids=(ticket.requester_id,)), Severity.INFO,
                                          f"comment:{comment.id}", excerpt=_excerpt(body)))
        elif not staff:
            messages.append(self._message(ticket, "support.customer_reply", self._team(ticket), Severity.INFO,
                                          f"comment:{comment.id}", requester=actor.username, excerpt=_excerpt(body)))
        messages += self._status_messages(ticket, before, replied=comment.public and staff)
        await self._tell(messages)
        if comment.public:
            await self._event(ticket, msg.TICKET_REPLIED, comment_id=comment.id, by_staff=staff)
        await self._status_event(ticket, before)
        return comment

    async def solve(self, actor: User, ticket_id: str) -> Ticket:
        """The requester (or staff) marks it solved."""
        ticket, staff = await self._visible(actor, ticket_id)
        before = ticket.status
        now = self.clock.now()
        if ticket.status is TicketStatus.SOLVED:
            return ticket
        if staff:
            self._agent_move(ticket, TicketStatus.SOLVED, now)
        else:
            if ticket.status not in ACTIVE:
                raise Conflict(f"a {ticket.status.value} ticket cannot be solved", code="invalid_transition")
            self._solve(ticket, now)
        await self._save(ticket)
        await self._tell(self._status_messages(ticket, before, replied=False) if staff else [])
        await self._status_event(ticket, before)
        return ticket

    async def reopen(self, actor: User, ticket_id: str) -> Ticket:
        ticket, _ = await self._visible(actor, ticket_id)
        if ticket.status is not TicketStatus.SOLVED:
            raise Conflict("only a solved ticket can be reopened" + ("; open a new one" if ticket.status is TicketStatus.CLOSED else ""),
                           code="ticket_closed" if ticket.status is TicketStatus.CLOSED else "invalid_transition")
        before = ticket.status
        ticket.move(TicketStatus.OPEN, self.clock.now(), self.settings.sla.elapsed(ticket, self.clock.now()))
        await self._save(ticket)
        await self._status_event(ticket, before)
        return ticket

    # --- the support team ------------------------------------------------------------

    async def queue(self, actor: User, *, statuses: list[TicketStatus] | None, assignee: str | None,
                    priority: str | None, limit: int, offset: int) -> tuple[list[Ticket], int]:
        """``assignee``: "me", "none" (unassigned) or a user id; None: anyone's."""
        await self._require_staff(actor)
        assignee_id = actor.id if assignee == "me" else (None if assignee in (None, "none") else assignee)
        return await self.repo.list(statuses=statuses, assignee_id=assignee_id, unassigned=assignee == "none",
                                    priority=_enum(Priority, priority, "priority") if priority else None,
                                    limit=limit, offset=offset)

    async def update(self, actor: User, ticket_id: str, *, status: str | None = None, priority: str | None = None,
                     category: str | None = None, assignee_id: str | None = None, unassign: bool = False) -> Ticket:
        ticket, staff = await self._visible(actor, ticket_id)
        if not staff:
            raise PermissionDenied("only the support team may change a ticket", code="support_role_required")
        if ticket.status is TicketStatus.CLOSED:
            raise Conflict("this ticket is closed", code="ticket_closed")
        now = self.clock.now()
        before, old_assignee = ticket.status, ticket.assignee_id
        if priority is not None:
            ticket.priority = _enum(Priority, priority, "priority")
        if category is not None:
            ticket.category = _enum(TicketCategory, category, "category")
        if unassign:
            ticket.assignee_id = None
        elif assignee_id is not None:
            async with self.uow() as uow:
                user = await uow.users.get(assignee_id)
            if user is None or not user.is_active or not await self.is_staff(user):
                raise InvalidInput("the assignee must be an active member of the support team",
                                   code="not_support_staff", details={"field": "assignee_id"})
            ticket.assignee_id = assignee_id
        if status is not None:
            self._agent_move(ticket, _enum(TicketStatus, status, "status"), now)
        ticket.updated_at = now
        await self._save(ticket)
        messages = self._status_messages(ticket, before, replied=False)
        if ticket.assignee_id and ticket.assignee_id != old_assignee and ticket.assignee_id != actor.id:
            messages.append(self._message(ticket, "support.assigned", Audience(user_ids=(ticket.assignee_id,)), Severity.INFO,
                                          f"ticket:{ticket.id}:assigned:{ticket.assignee_id}:{ticket.version}"))
        await self._tell(messages)
        await self._status_event(ticket, before)
        return ticket

    async def team(self, actor: User) -> list[User]:
        if not actor.is_admin:
            raise PermissionDenied("only platform administrators manage the support team", code="admin_required")
        ids = await self.repo.agents()
        async with self.uow() as uow:
            return [u for i in ids if (u := await uow.users.get(i)) is not None]

    async def add_to_team(self, actor: User, user_id: str) -> User:
        if not actor.is_admin:
            raise PermissionDenied("only platform administrators manage the support team", code="admin_required")
        async with self.uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        await self.repo.add_agent(user.id, actor.id, self.clock.now())
        return user

    async def remove_from_team(self, actor: User, user_id: str) -> None:
        if not actor.is_admin:
            raise PermissionDenied("only platform administrators manage the support team", code="admin_required")
        if not await self.repo.remove_agent(user_id):
            raise NotFound("not a member of the support team")

    # --- automations (run every minute by each server; idempotent) --------------------

    async def sweep(self) -> dict[str, int]:
        """Close solved tickets after N days, remind then auto-solve pending ones, raise SLA alerts."""
        now = self.clock.now()
        s = self.settings
        done = {"closed": 0, "reminded": 0, "auto_solved": 0, "sla_alerts": 0, "deleted": 0}
        if s.retention is not None:
            done["deleted"] = await self._purge(now - s.retention)
        after: str | None = None
        while True:  # every ticket that may need something, a page at a time (keyset on id)
            page = await self.repo.in_statuses([TicketStatus.SOLVED, TicketStatus.PENDING, *CLOCK_RUNS], _SWEEP_BATCH, after)
            for ticket in page:
                try:
                    await self._sweep_one(ticket, now, s, done)
                except Exception:  # noqa: BLE001 - one ticket must not stop the others
                    log.exception("support automation failed on ticket %s", ticket.id)
            if len(page) < _SWEEP_BATCH:
                return done
            after = page[-1].id

    async def _purge(self, closed_before: datetime) -> int:
        """Retention: closed tickets closed before then go, attachments' bytes first (so no
        object outlives its row unseen: a crash in between leaves a row whose delete is retried)."""
        deleted = 0
        while True:
            page = await self.repo.closed_before(closed_before, _SWEEP_BATCH)
            for ticket in page:
                if self.objects is not None:
                    for a in await self.repo.attachments(ticket.id, include_internal=True):
                        await self.objects.delete(a.key)
                await self.repo.delete(ticket.id)
                deleted += 1
            if len(page) < _SWEEP_BATCH:
                return deleted

    async def _sweep_one(self, ticket: Ticket, now: datetime, s: SupportSettings, done: dict[str, int]) -> None:
        if ticket.status is TicketStatus.SOLVED and ticket.solved_at and now >= ticket.solved_at + s.close_solved_after:
            ticket.move(TicketStatus.CLOSED, now, s.sla.elapsed(ticket, now))
            if await self.repo.save(ticket):
                done["closed"] += 1
                await self._status_event(ticket, TicketStatus.SOLVED)
            return
        if ticket.status is TicketStatus.PENDING and ticket.pending_since:
            if now >= ticket.pending_since + s.solve_pending_after:
                self._solve(ticket, now)
                if await self.repo.save(ticket):
                    done["auto_solved"] += 1
                    await self._tell([self._message(ticket, "support.auto_solved", Audience(user_ids=(ticket.requester_id,)),
                                                    Severity.INFO, f"ticket:{ticket.id}:auto_solved:{ticket.solved_at.isoformat()}")])
                    await self._status_event(ticket, TicketStatus.PENDING)
                return
            if ticket.reminded_at is None and now >= ticket.pending_since + s.remind_pending_after:
                ticket.reminded_at = now
                if await self.repo.save(ticket):
                    done["reminded"] += 1
                    solve_on = (ticket.pending_since + s.solve_pending_after).strftime("%Y-%m-%d %H:%M UTC")
                    await self._tell([self._message(ticket, "support.pending_reminder", Audience(user_ids=(ticket.requester_id,)),
                                                    Severity.WARNING, f"ticket:{ticket.id}:remind:{ticket.pending_since.isoformat()}",
                                                    solve_on=solve_on)])
            return
        alerts = s.sla.alerts_due(ticket, now)
        if not alerts:
            return
        for name, level in alerts:
            ticket.sla_alerts.add(f"{name}.{level}")
        if not await self.repo.save(ticket):
            return  # changed meanwhile: the next sweep looks again
        targets = {t.name: t for t in s.sla.status(ticket, now)}
        messages = []
        for name, level in alerts:
            due = targets[name].due_at
            messages.append(self._message(
                ticket, f"support.sla_{level}", self._team(ticket), Severity.CRITICAL if level == "breach" else Severity.WARNING,
                f"ticket:{ticket.id}:sla:{name}:{level}", target=name.replace("_", " "), target_zh=msg.TARGET_ZH[name],
                due=due.strftime("%Y-%m-%d %H:%M UTC") if due else "now"))
            done["sla_alerts"] += 1
        await self._tell(messages)
        for name, level in alerts:
            if level == "breach":
                await self._event(ticket, msg.TICKET_SLA_BREACHED, target=name)

    # --- helpers ---------------------------------------------------------------------

    def _solve(self, ticket: Ticket, now: datetime) -> None:
        sla = self.settings.sla
        elapsed = sla.elapsed(ticket, now)
        if elapsed > sla.targets[ticket.priority][1]:
            ticket.sla_alerts.add(f"{RESOLUTION}.breach")
        ticket.move(TicketStatus.SOLVED, now, elapsed)

    def _agent_move(self, ticket: Ticket, to: TicketStatus, now: datetime) -> None:
        if to is ticket.status:
            return
        if to is TicketStatus.SOLVED and to in ticket.moves_for_agent():
            self._solve(ticket, now)  # records a late resolution as a breach
        else:
            ticket.agent_move(to, now, self.settings.sla.elapsed(ticket, now))

    @staticmethod
    def _team(ticket: Ticket) -> Audience:
        """The assignee when there is one, else the whole team (``_tell`` adds the agents to the admins)."""
        if ticket.assignee_id:
            return Audience(user_ids=(ticket.assignee_id,))
        return Audience(admins=True)

    def _message(self, ticket: Ticket, kind: str, audience: Audience, severity: Severity, source_key: str, **params: Any) -> Message:
        base = {"subject": ticket.subject, "priority": ticket.priority.value, "priority_zh": msg.PRIORITY_ZH[ticket.priority.value],
                "close_days": int(self.settings.close_solved_after.total_seconds() // 86400)}
        return Message(kind, Category.SUPPORT, severity, audience, source_key, {**base, **params}, f"/tickets/{ticket.id}")

    def _status_messages(self, ticket: Ticket, before: TicketStatus, *, replied: bool) -> list[Message]:
        if ticket.status is TicketStatus.SOLVED and before is not TicketStatus.SOLVED:
            return [self._message(ticket, "support.solved", Audience(user_ids=(ticket.requester_id,)), Severity.INFO,
                                  f"ticket:{ticket.id}:solved:{ticket.solved_at.isoformat() if ticket.solved_at else ''}")]
        return []

    async def _tell(self, messages: list[Message]) -> None:
        if not messages or self.notifier is None:
            return
        needs_team = any(m.audience.admins for m in messages)
        if needs_team:
            agents = tuple(await self.repo.agents())
            messages = [Message(m.kind, m.category, m.severity, Audience(user_ids=agents, admins=True), m.source_key, m.params, m.link)
                        if m.audience.admins else m for m in messages]
        try:
            await self.notifier.dispatch(messages)
        except Exception:  # noqa: BLE001 - the ticket is saved; a lost notification is logged, not fatal
            log.exception("support notifications failed")

    async def _event(self, ticket: Ticket, event_type: str, **extra: Any) -> None:
        if self.publish is None or ticket.workspace_id is None:
            return
        data = {"ticket_id": ticket.id, "workspace_id": ticket.workspace_id, "subject": ticket.subject,
                "status": ticket.status.value, "priority": ticket.priority.value, "category": ticket.category.value,
                "environment_id": ticket.environment_id, **extra}
        try:
            await self.publish(ticket.workspace_id, event_type, data)
        except Exception:  # noqa: BLE001
            log.exception("queueing webhook %s for ticket %s failed", event_type, ticket.id)

    async def _status_event(self, ticket: Ticket, before: TicketStatus) -> None:
        if ticket.status is not before:
            await self._event(ticket, msg.TICKET_STATUS_CHANGED, previous_status=before.value)


def _enum(kind: Any, value: str | None, field_name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = [e.value for e in kind]
        raise InvalidInput(f"{field_name} must be one of {', '.join(allowed)}", details={"field": field_name, "allowed": allowed}) from None
