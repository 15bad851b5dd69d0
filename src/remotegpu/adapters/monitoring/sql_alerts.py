"""AlertStore in SQL: ``open`` relies on the unique (rule_id, open_key), ``save`` on a version check."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.application.monitoring.alert_ports import AlertRecord
from remotegpu.domain.monitoring.alerts import AlertRule, AlertState, AlertStatus, RuleType, Scope, Silence

_RULES, _ALERTS, _SIL = t.alert_rules, t.alerts, t.alert_silences


def _rule_row(r: AlertRule) -> dict[str, Any]:
    return dict(id=r.id, name=r.name, type=r.type.value, scope=r.scope.value, workspace_id=r.workspace_id, metric=r.metric,
                op=r.op, threshold=r.threshold, for_seconds=r.for_seconds, keep_firing_for_seconds=r.keep_firing_for_seconds,
                env_id=r.env_id, severity=r.severity, enabled=r.enabled, created_by=r.created_by, created_at=r.created_at,
                updated_at=r.updated_at)


def _rule(r: Any) -> AlertRule:
    return AlertRule(r.id, r.name, RuleType(r.type), Scope(r.scope), r.workspace_id, r.metric, r.op, r.threshold,
                     r.for_seconds, r.keep_firing_for_seconds, r.created_by, r.created_at, r.updated_at, r.enabled, r.env_id,
                     r.severity)


def _alert_row(a: AlertRecord) -> dict[str, Any]:
    s = a.state
    return dict(id=a.id, rule_id=a.rule_id, workspace_id=a.workspace_id, fingerprint=a.fingerprint,
                open_key=a.id if s.status is AlertStatus.RESOLVED else a.fingerprint, labels=json.dumps(a.labels),
                status=s.status.value, pending_since=s.pending_since, last_breach_at=s.last_breach_at, fired_at=s.fired_at,
                resolved_at=s.resolved_at, value=s.value, silenced=a.silenced, version=a.version)


def _alert(r: Any, rule_name: str = "") -> AlertRecord:
    state = AlertState(AlertStatus(r.status), r.pending_since, r.last_breach_at, r.fired_at, r.resolved_at, r.value)
    return AlertRecord(r.id, r.rule_id, r.workspace_id, r.fingerprint, json.loads(r.labels), state, r.silenced, r.version,
                       rule_name)


def _silence(r: Any) -> Silence:
    return Silence(r.id, Scope(r.scope), r.workspace_id, r.starts_at, r.ends_at, r.created_by, r.created_at, r.rule_id,
                   json.loads(r.matchers), r.comment)


class SqlAlertStore:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def _run(self, statement: Any) -> Any:
        async with self._sessions() as session, session.begin():
            return await session.execute(statement)

    async def add_rule(self, rule: AlertRule) -> None:
        await self._run(_RULES.insert().values(**_rule_row(rule)))

    async def get_rule(self, rule_id: str) -> AlertRule | None:
        row = (await self._run(sa.select(_RULES).where(_RULES.c.id == rule_id))).first()
        return _rule(row) if row else None

    async def update_rule(self, rule: AlertRule) -> None:
        await self._run(_RULES.update().where(_RULES.c.id == rule.id).values(**_rule_row(rule)))

    async def delete_rule(self, rule_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(_ALERTS.delete().where(_ALERTS.c.rule_id == rule_id))
            await session.execute(_RULES.delete().where(_RULES.c.id == rule_id))

    async def list_rules(self, *, workspace_id=None, platform=False, enabled_only=False) -> list[AlertRule]:
        q = sa.select(_RULES).order_by(_RULES.c.created_at, _RULES.c.id)
        if workspace_id is not None:
            q = q.where(_RULES.c.workspace_id == workspace_id)
        if platform:
            q = q.where(_RULES.c.scope == Scope.PLATFORM.value)
        if enabled_only:
            q = q.where(_RULES.c.enabled.is_(True))
        return [_rule(r) for r in (await self._run(q)).all()]

    async def open_alerts(self, rule_id: str) -> list[AlertRecord]:
        q = sa.select(_ALERTS).where(_ALERTS.c.rule_id == rule_id, _ALERTS.c.status != AlertStatus.RESOLVED.value)
        return [_alert(r) for r in (await self._run(q)).all()]

    async def open(self, record: AlertRecord) -> bool:
        try:
            await self._run(_ALERTS.insert().values(**_alert_row(record)))
        except IntegrityError:
            return False
        return True

    async def save(self, record: AlertRecord) -> bool:
        row = _alert_row(record)
        row["version"] = record.version + 1
        result = await self._run(_ALERTS.update().where(_ALERTS.c.id == record.id, _ALERTS.c.version == record.version)
                                 .values(**row))
        return result.rowcount == 1

    async def discard(self, record: AlertRecord) -> bool:
        result = await self._run(_ALERTS.delete().where(_ALERTS.c.id == record.id, _ALERTS.c.version == record.version))
        return result.rowcount == 1

    async def list_alerts(self, *, workspace_id, platform, status, limit, offset):
        cond = []
        if workspace_id is not None:
            cond.append(_ALERTS.c.workspace_id == workspace_id)
        if platform:
            cond.append(_RULES.c.scope == Scope.PLATFORM.value)
        if status is not None:
            cond.append(_ALERTS.c.status == status)
        joined = _ALERTS.join(_RULES, _RULES.c.id == _ALERTS.c.rule_id)
        async with self._sessions() as session:
            total = (await session.execute(sa.select(sa.func.count()).select_from(joined).where(*cond))).scalar_one()
            rows = (await session.execute(
                sa.select(_ALERTS, _RULES.c.name.label("rule_name")).select_from(joined).where(*cond)
                .order_by(_ALERTS.c.pending_since.desc(), _ALERTS.c.id).limit(limit).offset(offset))).all()
        return [_alert(r, r.rule_name) for r in rows], total

    async def add_silence(self, silence: Silence) -> None:
        s = silence
        await self._run(_SIL.insert().values(
            id=s.id, scope=s.scope.value, workspace_id=s.workspace_id, rule_id=s.rule_id, matchers=json.dumps(s.matchers),
            comment=s.comment, starts_at=s.starts_at, ends_at=s.ends_at, created_by=s.created_by, created_at=s.created_at))

    async def get_silence(self, silence_id: str) -> Silence | None:
        row = (await self._run(sa.select(_SIL).where(_SIL.c.id == silence_id))).first()
        return _silence(row) if row else None

    async def delete_silence(self, silence_id: str) -> None:
        await self._run(_SIL.delete().where(_SIL.c.id == silence_id))

    async def list_silences(self, *, workspace_id=None, platform=False) -> list[Silence]:
        q = sa.select(_SIL).order_by(_SIL.c.created_at, _SIL.c.id)
        if workspace_id is not None:
            q = q.where(_SIL.c.workspace_id == workspace_id)
        if platform:
            q = q.where(_SIL.c.scope == Scope.PLATFORM.value)
        return [_silence(r) for r in (await self._run(q)).all()]
