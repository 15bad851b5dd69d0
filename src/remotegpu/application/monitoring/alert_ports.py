"""The alert store port: rules, episodes (one per series firing), silences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from remotegpu.domain.monitoring.alerts import AlertRule, AlertState, Silence


@dataclass
class AlertRecord:
    """One episode of one series of one rule (pending, firing, then resolved)."""

    id: str
    rule_id: str
    workspace_id: str | None
    fingerprint: str
    labels: dict[str, str]
    state: AlertState
    silenced: bool = False
    version: int = 0
    rule_name: str = field(default="", compare=False)


class AlertStore(Protocol):
    """Every method is its own short transaction. ``open`` and ``save`` are what makes
    evaluation safe on several replicas at once: only one opens a series' episode
    (unique per rule and open series), only one moves it on (version check); the one
    that did is the one that notifies."""

    async def add_rule(self, rule: AlertRule) -> None: ...
    async def get_rule(self, rule_id: str) -> AlertRule | None: ...
    async def update_rule(self, rule: AlertRule) -> None: ...
    async def delete_rule(self, rule_id: str) -> None: ...
    async def list_rules(self, *, workspace_id: str | None = None, platform: bool = False,
                         enabled_only: bool = False) -> list[AlertRule]:
        """A workspace's rules; ``platform``: the platform's; neither: all (evaluation)."""
        ...

    async def open_alerts(self, rule_id: str) -> list[AlertRecord]: ...
    async def open(self, record: AlertRecord) -> bool:
        """Insert a new episode; False when that series of that rule already has an open one."""
        ...
    async def save(self, record: AlertRecord) -> bool:
        """Store ``record`` if its stored version is ``record.version`` (then + 1); False otherwise."""
        ...
    async def discard(self, record: AlertRecord) -> bool:
        """Remove a pending episode that never fired (version-checked)."""
        ...
    async def list_alerts(self, *, workspace_id: str | None, platform: bool, status: str | None,
                          limit: int, offset: int) -> tuple[list[AlertRecord], int]:
        """Newest first."""
        ...

    async def add_silence(self, silence: Silence) -> None: ...
    async def get_silence(self, silence_id: str) -> Silence | None: ...
    async def delete_silence(self, silence_id: str) -> None: ...
    async def list_silences(self, *, workspace_id: str | None = None, platform: bool = False) -> list[Silence]:
        """A workspace's; ``platform``: the platform's; neither: all."""
        ...
