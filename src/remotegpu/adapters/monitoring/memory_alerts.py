"""AlertStore in memory (tests, ``persistence=memory``)."""

from __future__ import annotations

from dataclasses import replace

from remotegpu.application.monitoring.alert_ports import AlertRecord
from remotegpu.domain.monitoring.alerts import AlertRule, AlertStatus, Scope, Silence


class InMemoryAlertStore:
    def __init__(self) -> None:
        self.rules: dict[str, AlertRule] = {}
        self.alerts: dict[str, AlertRecord] = {}
        self.silences: dict[str, Silence] = {}

    async def add_rule(self, rule: AlertRule) -> None:
        self.rules[rule.id] = replace(rule)

    async def get_rule(self, rule_id: str) -> AlertRule | None:
        rule = self.rules.get(rule_id)
        return replace(rule) if rule else None

    async def update_rule(self, rule: AlertRule) -> None:
        self.rules[rule.id] = replace(rule)

    async def delete_rule(self, rule_id: str) -> None:
        self.rules.pop(rule_id, None)
        for key in [k for k, a in self.alerts.items() if a.rule_id == rule_id]:
            del self.alerts[key]

    async def list_rules(self, *, workspace_id=None, platform=False, enabled_only=False) -> list[AlertRule]:
        out = [r for r in self.rules.values()
               if (workspace_id is None or r.workspace_id == workspace_id)
               and (not platform or r.scope is Scope.PLATFORM) and (not enabled_only or r.enabled)]
        return [replace(r) for r in sorted(out, key=lambda r: (r.created_at, r.id))]

    async def open_alerts(self, rule_id: str) -> list[AlertRecord]:
        return [replace(a) for a in self.alerts.values() if a.rule_id == rule_id and a.state.status is not AlertStatus.RESOLVED]

    async def open(self, record: AlertRecord) -> bool:
        if any(a.fingerprint == record.fingerprint for a in await self.open_alerts(record.rule_id)):
            return False
        self.alerts[record.id] = replace(record)
        return True

    async def save(self, record: AlertRecord) -> bool:
        stored = self.alerts.get(record.id)
        if stored is None or stored.version != record.version:
            return False
        self.alerts[record.id] = replace(record, version=record.version + 1)
        return True

    async def discard(self, record: AlertRecord) -> bool:
        stored = self.alerts.get(record.id)
        if stored is None or stored.version != record.version:
            return False
        del self.alerts[record.id]
        return True

    async def list_alerts(self, *, workspace_id, platform, status, limit, offset):
        out = [a for a in self.alerts.values()
               if (workspace_id is None or a.workspace_id == workspace_id)
               and (not platform or self.rules.get(a.rule_id) and self.rules[a.rule_id].scope is Scope.PLATFORM)
               and (status is None or a.state.status.value == status)]
        out.sort(key=lambda a: (-a.state.pending_since, a.id))
        for a in out:
            a.rule_name = self.rules[a.rule_id].name if a.rule_id in self.rules else ""
        return [replace(a) for a in out[offset:offset + limit]], len(out)

    async def add_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = replace(silence)

    async def get_silence(self, silence_id: str) -> Silence | None:
        s = self.silences.get(silence_id)
        return replace(s) if s else None

    async def delete_silence(self, silence_id: str) -> None:
        self.silences.pop(silence_id, None)

    async def list_silences(self, *, workspace_id=None, platform=False) -> list[Silence]:
        return [replace(s) for s in self.silences.values()
                if (workspace_id is None or s.workspace_id == workspace_id) and (not platform or s.scope is Scope.PLATFORM)]
