"""Alert rules, their evaluation and silences.

Evaluation (``evaluate``) runs on every server on a short cadence (and as a worker
task): for each enabled rule it observes the series in its scope (latest samples, or
the hosts' status for ``host_offline``), steps each series' state machine
(domain/monitoring/alerts.py) and stores the result. Several replicas may evaluate at
once: an episode is opened by one only (unique per rule and open series) and moved on
by one only (version check); whoever stored a transition announces it, so each
firing and each resolution is told once. Announcements go to the notifications port
(workspace rules: the workspace's members; platform rules: the admins) unless a
silence mutes them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from remotegpu.application.identity.admin import require_admin
from remotegpu.application.monitoring.alert_ports import AlertRecord, AlertStore
from remotegpu.application.monitoring.ports import MetricsStore, SeriesFilter
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.fleet.models import HostStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.monitoring.alerts import (
    MAX_RUNWAY_HOURS,
    AlertRule,
    AlertStatus,
    RuleType,
    Scope,
    Silence,
    fingerprint,
    step,
)
from remotegpu.domain.notifications.models import Audience, Category, Message, Severity
from remotegpu.domain.shared.errors import InvalidInput, NotFound
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)

#: A series whose newest sample is older than this (seconds) counts as not breaching.
STALE_SECONDS = 120.0

RULE_FIELDS = ("name", "metric", "op", "threshold", "for_seconds", "keep_firing_for_seconds", "env_id", "severity", "enabled")


@dataclass
class AlertService:
    uow: UnitOfWorkFactory
    store: AlertStore
    metrics: MetricsStore
    clock: Clock
    notify: Callable[[list[Message]], Awaitable[Any]] | None = None
    wall: Callable[[], float] = time.time
    default_quota: Any = None  # the configured default workspace quota (Quota), for quota_near_limit
    # Webhooks of the workspace (workspace rules): publish(workspace_id, event_type, data).
    publish: Callable[[str, str, dict[str, Any]], Awaitable[Any]] | None = None
    # Billing (balance_low): workspace ids (None: every wallet) → {id: (balance, hourly burn)}.
    balances: Callable[[list[str] | None], Awaitable[dict[str, tuple[int, int]]]] | None = None

    # --- rules ------------------------------------------------------------------------

    async def _check(self, actor: User, scope: Scope, workspace_id: str | None, *, write: bool) -> None:
        if scope is Scope.PLATFORM:
            require_admin(actor)
            return
        if not workspace_id:
            raise InvalidInput("workspace_id is required for a workspace rule", details={"field": "workspace_id"})
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.MEMBER if write else Role.VIEWER)

    async def create_rule(self, actor: User, *, scope: str, workspace_id: str | None, type: str, **fields: Any) -> AlertRule:
        try:
            scope_, type_ = Scope(scope), RuleType(type)
        except ValueError as exc:
            raise InvalidInput(str(exc), details={"field": "type"}) from None
        await self._check(actor, scope_, workspace_id, write=True)
        if fields.get("env_id"):
            await self._check_env(actor, fields["env_id"], workspace_id if scope_ is Scope.WORKSPACE else None)
        rule = AlertRule.create(name=fields.pop("name"), type=type_, scope=scope_,
                                workspace_id=workspace_id if scope_ is Scope.WORKSPACE else None, created_by=actor.id,
                                now=self.clock.now(), **{k: v for k, v in fields.items() if v is not None})
        await self.store.add_rule(rule)
        return rule

    async def _check_env(self, actor: User, env_id: str, workspace_id: str | None) -> None:
        async with self.uow() as uow:
            env = await uow.environments.get(env_id)
            if env is None or (workspace_id is not None and env.workspace_id != workspace_id):
                raise NotFound("environment not found")
            await authorize(uow, actor, env.workspace_id, Role.VIEWER)

    async def get_rule(self, actor: User, rule_id: str, *, write: bool = False) -> AlertRule:
        rule = await self.store.get_rule(rule_id)
        if rule is None:
            raise NotFound("alert rule not found")
        try:
            await self._check(actor, rule.scope, rule.workspace_id, write=write)
        except NotFound:
            raise NotFound("alert rule not found") from None
        return rule

    async def list_rules(self, actor: User, workspace_id: str | None) -> list[AlertRule]:
        if workspace_id is None:
            require_admin(actor)
            return await self.store.list_rules(platform=True)
        await self._check(actor, Scope.WORKSPACE, workspace_id, write=False)
        return await self.store.list_rules(workspace_id=workspace_id)

    async def update_rule(self, actor: User, rule_id: str, changes: dict[str, Any]) -> AlertRule:
        rule = await self.get_rule(actor, rule_id, write=True)
        for key, value in changes.items():
            if key in RULE_FIELDS and value is not None:
                if key in ("metric", "op") and rule.type is not RuleType.THRESHOLD:
                    raise InvalidInput(f"{key} is fixed for {rule.type.value} rules", details={"field": key})
                setattr(rule, key, value)
        if changes.get("env_id"):
            await self._check_env(actor, rule.env_id, rule.workspace_id)
        rule.validate()
        rule.updated_at = self.clock.now()
        await self.store.update_rule(rule)
        return rule

    async def delete_rule(self, actor: User, rule_id: str) -> None:
        await self.get_rule(actor, rule_id, write=True)
        await self.store.delete_rule(rule_id)

    # --- alerts and silences ------------------------------------------------------------

    async def list_alerts(self, actor: User, workspace_id: str | None, status: str | None, limit: int, offset: int):
        if workspace_id is None:
            require_admin(actor)
            return await self.store.list_alerts(workspace_id=None, platform=True, status=status, limit=limit, offset=offset)
        await self._check(actor, Scope.WORKSPACE, workspace_id, write=False)
        return await self.store.list_alerts(workspace_id=workspace_id, platform=False, status=status, limit=limit,
                                            offset=offset)

    async def create_silence(self, actor: User, *, workspace_id: str | None, ends_at: datetime,
                             starts_at: datetime | None = None, rule_id: str = "", matchers: dict[str, str] | None = None,
                             comment: str = "") -> Silence:
        scope = Scope.WORKSPACE if workspace_id else Scope.PLATFORM
        await self._check(actor, scope, workspace_id, write=True)
        if rule_id:
            rule = await self.get_rule(actor, rule_id)
            if rule.workspace_id != workspace_id:
                raise NotFound("alert rule not found")
        now = self.clock.now()
        aware = lambda d: d if d is None or d.tzinfo is not None else d.replace(tzinfo=timezone.utc)  # noqa: E731
        starts_at, ends_at = aware(starts_at), aware(ends_at)
        silence = Silence(new_id(), scope, workspace_id, starts_at or now, ends_at, actor.id, now, rule_id,
                          dict(matchers or {}), comment)
        silence.validate()
        await self.store.add_silence(silence)
        return silence

    async def list_silences(self, actor: User, workspace_id: str | None) -> list[Silence]:
        if workspace_id is None:
            require_admin(actor)
            return await self.store.list_silences(platform=True)
        await self._check(actor, Scope.WORKSPACE, workspace_id, write=False)
        return await self.store.list_silences(workspace_id=workspace_id)

    async def delete_silence(self, actor: User, silence_id: str) -> None:
        silence = await self.store.get_silence(silence_id)
        if silence is None:
            raise NotFound("silence not found")
        try:
            await self._check(actor, silence.scope, silence.workspace_id, write=True)
        except NotFound:
            raise NotFound("silence not found") from None
        await self.store.delete_silence(silence_id)

    # --- evaluation ---------------------------------------------------------------------

    async def evaluate(self) -> list[tuple[str, str, str]]:
        """One round over every enabled rule; returns the transitions this call stored
        and announced: (rule id, fingerprint, "firing" | "resolved")."""
        now = self.wall()
        wall_now = datetime.fromtimestamp(now, tz=timezone.utc)
        silences = await self.store.list_silences()
        out: list[tuple[str, str, str]] = []
        messages: list[Message] = []
        hooks: list[tuple[str, str, dict[str, Any]]] = []
        for rule in await self.store.list_rules(enabled_only=True):
            try:
                observed = await self._observe(rule, now)
            except Exception:  # noqa: BLE001 - one bad rule never stops the others
                log.exception("observing alert rule %s failed", rule.id)
                continue
            open_ = {a.fingerprint: a for a in await self.store.open_alerts(rule.id)}
            for fp in set(observed) | set(open_):
                labels, value, breaching = observed.get(fp) or (open_[fp].labels, None, False)
                record = open_.get(fp)
                state, event = step(record.state if record else None, breaching, now, for_seconds=rule.for_seconds,
                                    keep_firing_for_seconds=rule.keep_firing_for_seconds, value=value)
                silenced = any(s.mutes(rule, labels, wall_now) for s in silences
                               if s.scope is Scope.PLATFORM or s.workspace_id == rule.workspace_id)
                if record is None:
                    if state is None:
                        continue
                    record = AlertRecord(new_id(), rule.id, rule.workspace_id, fp, labels, state, silenced)
                    stored = await self.store.open(record)
                elif state is None:
                    await self.store.discard(record)
                    continue
                else:
                    if state == record.state and silenced == record.silenced:
                        continue
                    stored = await self.store.save(replace(record, state=state, silenced=silenced, labels=labels))
                if stored and event:
                    out.append((rule.id, fp, event))
                    if not silenced:
                        messages.append(_message(rule, record, labels, state, event))
                        if rule.workspace_id:
                            hooks.append((rule.workspace_id, f"alert.{event}", {
                                "alert_id": record.id, "rule_id": rule.id, "rule_name": rule.name, "labels": labels,
                                "value": state.value, "severity": rule.severity,
                                "since": datetime.fromtimestamp(state.pending_since, tz=timezone.utc).isoformat()}))
        for workspace_id, event_type, data in hooks if self.publish is not None else []:
            try:
                await self.publish(workspace_id, event_type, data)
            except Exception:  # noqa: BLE001 - best effort, like notifications
                log.exception("alert webhook failed")
        if messages and self.notify is not None:
            try:
                await self.notify(messages)
            except Exception:  # noqa: BLE001 - alerts are stored; telling people is best effort
                log.exception("alert notifications failed")
        return out

    async def _observe(self, rule: AlertRule, now: float) -> dict[str, tuple[dict[str, str], float, bool]]:
        """fingerprint → (labels, value, breaching) of every series the rule sees now."""
        out: dict[str, tuple[dict[str, str], float, bool]] = {}
        if rule.type is RuleType.HOST_OFFLINE:
            async with self.uow() as uow:
                hosts = await uow.hosts.list()
            for h in hosts:
                labels = {"host": h.id, "host_name": h.name}
                online = 0.0 if h.status is HostStatus.OFFLINE else 1.0
                out[fingerprint(rule.id, labels)] = (labels, online, rule.breaches(online))
            return out
        if rule.type is RuleType.QUOTA_NEAR_LIMIT:
            return await self._observe_quotas(rule)
        if rule.type is RuleType.BALANCE_LOW:
            return await self._observe_balances(rule)
        flt = SeriesFilter(workspace_id=rule.workspace_id if rule.scope is Scope.WORKSPACE else None,
                           env_id=rule.env_id or None)
        for s in await self.metrics.latest(flt, since=now - STALE_SECONDS, metrics=[rule.metric]):
            if rule.type is RuleType.ENV_IDLE and not s.env_id:
                continue  # a GPU nobody holds is not an idle environment
            labels = {k: v for k, v in (("host", s.host_id), ("environment", s.env_id), ("workspace", s.workspace_id),
                                        ("gpu_uuid", s.gpu_uuid)) if v}
            out[fingerprint(rule.id, labels)] = (labels, s.value, rule.breaches(s.value))
        return out

    async def _observe_balances(self, rule: AlertRule) -> dict[str, tuple[dict[str, str], float, bool]]:
        """Per wallet (the rule's workspace, or every wallet for a platform rule): its
        runway in hours at what its running environments cost now, or its balance."""
        out: dict[str, tuple[dict[str, str], float, bool]] = {}
        if self.balances is None:
            return out  # billing is not wired (tests of other rules)
        for ws_id, (balance, burn) in sorted((await self.balances([rule.workspace_id] if rule.workspace_id else None)).items()):
            if rule.metric == "balance":
                value = float(balance)
            elif balance <= 0:
                value = 0.0
            else:
                value = round(min(MAX_RUNWAY_HOURS, balance / burn), 3) if burn > 0 else MAX_RUNWAY_HOURS
            labels = {"workspace": ws_id}
            out[fingerprint(rule.id, labels)] = (labels, value, rule.breaches(value))
        return out

    async def _observe_quotas(self, rule: AlertRule) -> dict[str, tuple[dict[str, str], float, bool]]:
        """Per workspace (the rule's, or every one for a platform rule): the highest
        share of any limited quota in use, in percent."""
        out: dict[str, tuple[dict[str, str], float, bool]] = {}
        async with self.uow() as uow:
            if rule.workspace_id:
                workspaces = [rule.workspace_id]
            else:
                page, _ = await uow.workspaces.list_all(limit=10_000, offset=0)
                workspaces = [w.id for w in page]
            for ws_id in workspaces:
                quota = await uow.workspaces.get_quota(ws_id) or self.default_quota
                if quota is None:
                    continue
                usage = await uow.workspaces.usage(ws_id)
                shares = [100.0 * getattr(usage, name) / limit for name, limit in (
                    ("gpus", quota.max_gpus), ("environments", quota.max_environments), ("cpu_cores", quota.max_cpu_cores),
                    ("memory_gib", quota.max_memory_gib), ("storage_gib", quota.max_storage_gib)) if limit]
                value = round(max(shares, default=0.0), 3)
                labels = {"workspace": ws_id}
                out[fingerprint(rule.id, labels)] = (labels, value, rule.breaches(value))
        return out


def _describe(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _message(rule: AlertRule, record: AlertRecord, labels: dict[str, str], state: Any, event: str) -> Message:
    audience = Audience(workspace_id=rule.workspace_id) if rule.scope is Scope.WORKSPACE else Audience(admins=True)
    if rule.type is RuleType.BALANCE_LOW:
        # The wallet's owners (the workspace's owner and admins, who top up and set its
        # budget), whoever wrote the rule: a platform rule watches every wallet.
        audience = Audience(workspace_id=labels["workspace"], roles=(Role.OWNER, Role.ADMIN))
    since = datetime.fromtimestamp(state.pending_since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    value = "" if state.value is None else f"{state.value:g}"
    link = f"/environments/{labels['environment']}" if labels.get("environment") else "/alerts"
    if rule.type is RuleType.BALANCE_LOW:
        link = "/billing"
    return Message(kind=f"alert.{event}", category=Category.ALERT, severity=Severity(rule.severity), audience=audience,
                   source_key=f"alert:{record.id}:{event}", params={"rule": rule.name, "what": _describe(labels),
                                                                     "value": value, "since": since}, link=link)
