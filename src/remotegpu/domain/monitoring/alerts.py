"""Alert rules, their per-series state machine, and silences (pure).

A rule watches many series (one per GPU, environment or host): each has its own state.

    (nothing) --breach--> pending --breach for ``for``--> firing --no breach for
    ``keep_firing_for``--> resolved

* a pending series that stops breaching before ``for`` has passed goes back to nothing
  (no notification: it never fired);
* a firing series stays firing while it breaches, and for ``keep_firing_for`` after its
  last breach (hysteresis: a value flapping around the threshold fires once, not on
  every crossing);
* ``for = 0`` fires on the first breaching evaluation.

Silences mute notifications, never the state: a silenced alert still fires and
resolves (and is listed as silenced); nobody is told.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from remotegpu.domain.monitoring.metrics import GPU_TEMP, GPU_UTIL, XID_ERRORS, check_metric
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.webhooks import events as webhook_events

#: Webhook event types of workspace alert rules (sent unless a silence mutes the alert).
ALERT_FIRING = webhook_events.register("alert.firing", "An alert rule of the workspace started firing.")
ALERT_RESOLVED = webhook_events.register("alert.resolved", "A firing alert of the workspace resolved.")


class RuleType(str, Enum):
    THRESHOLD = "threshold"  # metric op threshold, for `for`
    HOST_OFFLINE = "host_offline"  # a host missed its heartbeats (platform rules)
    GPU_XID = "gpu_xid"  # a GPU reported an XID error
    GPU_OVERHEAT = "gpu_overheat"  # GPU temperature above threshold (default 85 °C)
    ENV_IDLE = "env_idle"  # a running environment's GPU util below threshold % for `for`
    QUOTA_NEAR_LIMIT = "quota_near_limit"  # a workspace uses ≥ threshold % of a quota
    BALANCE_LOW = "balance_low"  # a wallet's runway (hours at its burn now) or balance below threshold


#: Built-in types: the metric and comparison they imply, and their default threshold.
BUILTIN = {
    RuleType.GPU_XID: (XID_ERRORS, ">", 0.0),
    RuleType.GPU_OVERHEAT: (GPU_TEMP, ">", 85.0),
    RuleType.ENV_IDLE: (GPU_UTIL, "<", 5.0),
}
PLATFORM_ONLY = {RuleType.HOST_OFFLINE}
#: What a balance_low rule compares: hours of runway (balance ÷ what the running
#: environments cost per hour now) or the balance itself (minor units); default 24 h.
BALANCE_METRICS = {"runway_hours": 24.0, "balance": 0.0}
#: Runway of a wallet that burns nothing (hours, ten years): finite, never "low".
MAX_RUNWAY_HOURS = 87_600.0
#: A balance_low alert keeps firing this long after the wallet is back over (unless the
#: rule says otherwise): environments starting and stopping move the runway around the
#: threshold, and the owner should hear of it once, not at every start.
BALANCE_KEEP_FIRING_SECONDS = 3600
OPERATORS = (">", ">=", "<", "<=")
MAX_DURATION_SECONDS = 7 * 86400


class Scope(str, Enum):
    WORKSPACE = "workspace"  # a workspace's members' rule: sees that workspace's series only
    PLATFORM = "platform"  # an admins' rule: every series


@dataclass
class AlertRule:
    id: str
    name: str
    type: RuleType
    scope: Scope
    workspace_id: str | None
    metric: str
    op: str
    threshold: float
    for_seconds: int
    keep_firing_for_seconds: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    enabled: bool = True
    env_id: str = ""  # "" = every environment in scope
    severity: str = "warning"  # "info" | "warning" | "critical"

    @classmethod
    def create(cls, *, name: str, type: RuleType, scope: Scope, workspace_id: str | None, created_by: str,
               now: datetime, metric: str = "", op: str = "", threshold: float | None = None,
               for_seconds: int = 60, keep_firing_for_seconds: int = 0, env_id: str = "",
               severity: str = "warning", enabled: bool = True) -> "AlertRule":
        rule = cls(new_id(), name, type, scope, workspace_id, metric, op, 0.0 if threshold is None else threshold,
                   for_seconds, keep_firing_for_seconds, created_by, now, now, enabled, env_id, severity)
        if type in BUILTIN:
            b_metric, b_op, b_threshold = BUILTIN[type]
            rule.metric, rule.op = b_metric, b_op
            rule.threshold = b_threshold if threshold is None else threshold
        elif type is RuleType.QUOTA_NEAR_LIMIT:
            rule.metric, rule.op = "quota_used_percent", ">="
            rule.threshold = 90.0 if threshold is None else threshold
        elif type is RuleType.HOST_OFFLINE:
            rule.metric, rule.op, rule.threshold = "host_online", "<", 1.0
        elif type is RuleType.BALANCE_LOW:
            rule.metric = metric or "runway_hours"
            rule.op = "<"
            rule.threshold = BALANCE_METRICS.get(rule.metric, 0.0) if threshold is None else threshold
            if keep_firing_for_seconds == 0:
                rule.keep_firing_for_seconds = BALANCE_KEEP_FIRING_SECONDS
        rule.validate()
        return rule

    def validate(self) -> None:
        name = self.name.strip()
        if not 1 <= len(name) <= 100 or any(ord(c) < 32 for c in name):
            raise InvalidInput("name: 1-100 printable characters", details={"field": "name"})
        if self.scope is Scope.WORKSPACE and not self.workspace_id:
            raise InvalidInput("a workspace rule needs workspace_id", details={"field": "workspace_id"})
        if self.scope is Scope.WORKSPACE and self.type in PLATFORM_ONLY:
            raise InvalidInput(f"{self.type.value} rules are platform rules (admins)", code="platform_rule",
                               details={"field": "type"})
        if self.type is RuleType.THRESHOLD:
            check_metric(self.metric)
        if self.type is RuleType.BALANCE_LOW and self.metric not in BALANCE_METRICS:
            raise InvalidInput(f"a balance_low rule's metric is one of {', '.join(BALANCE_METRICS)}",
                               details={"field": "metric"})
        if self.op not in OPERATORS:
            raise InvalidInput(f"op must be one of {', '.join(OPERATORS)}", details={"field": "op"})
        if not math.isfinite(self.threshold):
            raise InvalidInput("threshold must be a finite number", details={"field": "threshold"})
        for field_name in ("for_seconds", "keep_firing_for_seconds"):
            value = getattr(self, field_name)
            if not 0 <= value <= MAX_DURATION_SECONDS:
                raise InvalidInput(f"{field_name}: 0-{MAX_DURATION_SECONDS}", details={"field": field_name})
        if self.severity not in ("info", "warning", "critical"):
            raise InvalidInput("severity: info, warning or critical", details={"field": "severity"})

    def breaches(self, value: float) -> bool:
        return compare(value, self.op, self.threshold)


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    raise ValueError(op)


# --- the state machine ----------------------------------------------------------------


class AlertStatus(str, Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertState:
    status: AlertStatus
    pending_since: float
    last_breach_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None


def step(state: AlertState | None, breaching: bool, now: float, *, for_seconds: float,
         keep_firing_for_seconds: float, value: float | None = None) -> tuple[AlertState | None, str | None]:
    """The next state of one series and the transition to announce (``"firing"``,
    ``"resolved"`` or None). None in: nothing open; None out: nothing open (a pending
    series that stopped breaching). A RESOLVED state out is final: close it, and the
    next evaluation starts from None."""
    if state is None or state.status is AlertStatus.RESOLVED:
        if not breaching:
            return None, None
        state = AlertState(AlertStatus.PENDING, now, now, value=value)
        if for_seconds <= 0:
            return replace(state, status=AlertStatus.FIRING, fired_at=now), "firing"
        return state, None
    if state.status is AlertStatus.PENDING:
        if not breaching:
            return None, None
        state = replace(state, last_breach_at=now, value=value)
        if now - state.pending_since >= for_seconds:
            return replace(state, status=AlertStatus.FIRING, fired_at=now), "firing"
        return state, None
    # firing
    if breaching:
        return replace(state, last_breach_at=now, value=value), None
    if now - state.last_breach_at >= keep_firing_for_seconds:
        return replace(state, status=AlertStatus.RESOLVED, resolved_at=now, value=value), "resolved"
    return replace(state, value=value), None


def fingerprint(rule_id: str, labels: dict[str, str]) -> str:
    """Stable id of one series of one rule."""
    raw = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# --- silences ---------------------------------------------------------------------------


@dataclass
class Silence:
    """Mutes notifications of ``rule_id`` (or of every rule in scope when "") for alerts
    whose labels contain every ``matchers`` pair, from ``starts_at`` to ``ends_at``."""

    id: str
    scope: Scope
    workspace_id: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    rule_id: str = ""
    matchers: dict[str, str] = field(default_factory=dict)
    comment: str = ""

    def validate(self) -> None:
        if self.ends_at <= self.starts_at:
            raise InvalidInput("ends_at must be after starts_at", details={"field": "ends_at"})
        if self.scope is Scope.WORKSPACE and not self.workspace_id:
            raise InvalidInput("a workspace silence needs workspace_id", details={"field": "workspace_id"})
        if len(self.comment) > 500 or len(self.matchers) > 20:
            raise InvalidInput("comment ≤ 500 characters, ≤ 20 matchers", details={"field": "matchers"})

    def mutes(self, rule: AlertRule, labels: dict[str, str], now: datetime) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        if self.rule_id and self.rule_id != rule.id:
            return False
        if self.scope is Scope.WORKSPACE and labels.get("workspace") != self.workspace_id:
            return False
        return all(labels.get(k) == v for k, v in self.matchers.items())
