"""Egress rules for environment containers: what they may not reach outside their network.

Two chains of this installation's own (named from its scope, so two installations or
test runs on one machine never touch each other's rules), matched on the scope's bridge
interfaces (``rg<5 hex>+``, see ``docker_network.py``):

* ``RGPU-<h>-IN``, jumped to from ``INPUT``: a container reaches none of the host's own
  addresses (the Docker gateway, the host's LAN and public addresses: the server's API,
  PostgreSQL, Redis, the agent's services, whatever listens on them), except in replies
  to connections the host opened (``ESTABLISHED,RELATED``: the platform's proxy and
  terminal connect *to* containers). Published ports of another environment are no way
  around: their DNAT makes them forwarded traffic, dropped between workspace networks by
  Docker.
* ``RGPU-<h>-FWD``, jumped to from Docker's ``DOCKER-USER`` (``FORWARD``): replies pass;
  traffic to another environment bridge is left to Docker (same network: allowed,
  another network: dropped); link-local addresses (169.254.0.0/16: cloud metadata
  services) and the operator's ``REMOTEGPU_EGRESS_DENY`` ranges are dropped; the rest
  (the internet) passes unless ``REMOTEGPU_EGRESS_INTERNET=false``.

IPv4 only: environment networks have no IPv6. Installing needs root (or CAP_NET_ADMIN)
and the ``iptables`` command; without them ``install`` raises ``EgressUnavailable`` and
the caller decides (the agent logs it loudly and keeps running: a laptop in development).
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

METADATA_RANGE = "169.254.0.0/16"


class EgressUnavailable(Exception):
    """The rules could not be installed (no iptables, not root, no DOCKER-USER chain)."""


@dataclass(frozen=True)
class EgressPolicy:
    deny: tuple[str, ...] = ()  # CIDRs, besides link-local
    internet: bool = True

    @staticmethod
    def parse(deny: str = "", internet: str | bool = True) -> "EgressPolicy":
        """From the operator's settings: ``deny`` a comma/space separated CIDR list; a bad
        entry raises ValueError naming it."""
        ranges = []
        for item in deny.replace(",", " ").split():
            try:
                ranges.append(str(ipaddress.IPv4Network(item, strict=False)))
            except ValueError:
                raise ValueError(f"REMOTEGPU_EGRESS_DENY: {item!r} is not an IPv4 CIDR (e.g. 10.0.0.0/8)") from None
        if isinstance(internet, str):
            if internet.strip().lower() not in ("true", "false", "1", "0", "yes", "no", ""):
                raise ValueError(f"REMOTEGPU_EGRESS_INTERNET: expected true or false, got {internet!r}")
            internet = internet.strip().lower() in ("true", "1", "yes", "")
        return EgressPolicy(tuple(ranges), bool(internet))


@dataclass
class EgressRules:
    """The rules of one scope. ``install`` is idempotent (re-run it to keep them: it
    rewrites the chains and re-adds a missing jump); ``remove`` takes all of them away."""

    scope: str
    interface_prefix: str
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    iptables: str = "iptables"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def input_chain(self) -> str:
        return f"RGPU-{self._tag}-IN"

    @property
    def forward_chain(self) -> str:
        return f"RGPU-{self._tag}-FWD"

    @property
    def _tag(self) -> str:
        return hashlib.sha256(self.scope.encode()).hexdigest()[:8]

    @property
    def _interfaces(self) -> str:
        return self.interface_prefix + "+"

    def _jumps(self) -> list[tuple[str, list[str]]]:
        comment = ["-m", "comment", "--comment", f"remotegpu scope {self.scope}"[:250]]
        return [
            ("INPUT", ["-i", self._interfaces, *comment, "-j", self.input_chain]),
            ("DOCKER-USER", ["-i", self._interfaces, *comment, "-j", self.forward_chain]),
        ]

    def _input_rules(self) -> list[list[str]]:
        return [
            ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
            ["-j", "DROP"],
        ]

    def _forward_rules(self) -> list[list[str]]:
        rules = [
            ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
            ["-o", self._interfaces, "-j", "RETURN"],  # to an environment bridge: Docker's isolation decides
            ["-d", METADATA_RANGE, "-j", "DROP"],
            *(["-d", cidr, "-j", "DROP"] for cidr in self.policy.deny),
        ]
        if not self.policy.internet:
            rules.append(["-j", "DROP"])
        return rules

    # -- operations ---------------------------------------------------------------------

    def install(self) -> None:
        with self._lock:
            self._check_available()
            for chain, rules in ((self.input_chain, self._input_rules()), (self.forward_chain, self._forward_rules())):
                if self._run("-n", "-L", chain).returncode != 0:
                    self._must("-N", chain)
                elif self._holds(chain, rules):
                    continue  # as wanted: no flush, so no moment without the rules
                self._must("-F", chain)
                for rule in rules:
                    self._must("-A", chain, *rule)
            for parent, rule in self._jumps():
                if self._run("-C", parent, *rule).returncode != 0:
                    self._must("-I", parent, "1", *rule)  # first: before anything that accepts

    def installed(self) -> bool:
        """Whether both jumps and chains are in place (a daemon or firewall restart may
        have flushed them)."""
        if shutil.which(self.iptables) is None:
            return False
        return all(self._run("-C", parent, *rule).returncode == 0 for parent, rule in self._jumps())

    def remove(self) -> None:
        """Take every rule and chain of this scope away; silent for what is absent."""
        if shutil.which(self.iptables) is None:
            return
        with self._lock:
            for parent, rule in self._jumps():
                while self._run("-C", parent, *rule).returncode == 0:
                    self._run("-D", parent, *rule)
            for chain in (self.input_chain, self.forward_chain):
                if self._run("-n", "-L", chain).returncode == 0:
                    self._run("-F", chain)
                    self._run("-X", chain)

    def _holds(self, chain: str, rules: list[list[str]]) -> bool:
        listed = [line for line in self._run("-S", chain).stdout.splitlines() if line.startswith("-A ")]
        return len(listed) == len(rules) and all(self._run("-C", chain, *rule).returncode == 0 for rule in rules)

    # -- iptables -------------------------------------------------------------------------

    def _check_available(self) -> None:
        if shutil.which(self.iptables) is None:
            raise EgressUnavailable(f"{self.iptables} is not installed (apt-get install iptables)")
        probe = self._run("-n", "-L", "DOCKER-USER")
        if probe.returncode != 0:
            detail = probe.stderr.strip() or probe.stdout.strip()
            hint = "run the agent as root" if "denied" in detail.lower() else "is Docker's iptables integration on?"
            raise EgressUnavailable(f"cannot read the DOCKER-USER chain ({detail}); {hint}")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.iptables, "-w", "10", *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(args, 1, "", str(exc))

    def _must(self, *args: str) -> None:
        result = self._run(*args)
        if result.returncode != 0:
            raise EgressUnavailable(f"iptables {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
