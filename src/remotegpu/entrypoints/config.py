"""Configuration: REMOTEGPU_* environment variables, optionally a TOML/JSON/env file.

A bad value stops start-up with one clear line naming the key (see ``load_settings``).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from remotegpu.domain.identity.models import RegistrationPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REMOTEGPU_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: SQLite file in data_dir
    redis_url: str | None = None  # set → Dramatiq queue, Redis rate limits
    redis_namespace: str = "remotegpu"  # key prefix, so several platforms can share a Redis
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    secret_key: str | None = None  # default: generated once, kept in data_dir
    public_url: str | None = None
    # Environment web apps (JupyterLab…) are served at {env_id}--{app}.{apps_domain}, never on
    # the console's host (see README "Apps domain"). Default "localhost": *.localhost is loopback.
    apps_domain: str = "localhost"
    # Live connections (websockets, terminals, event streams) re-check their admission this often.
    live_recheck_seconds: float = Field(2.5, gt=0, le=60)
    # Remote desktop: the guacd (Guacamole proxy daemon) the desktop app's tunnel goes
    # through (host:port); it must reach the hosts' private addresses. See README "Remote desktop".
    guacd_address: str = "127.0.0.1:4822"
    max_event_streams_per_user: int = Field(8, ge=1, le=1000)

    registration_policy: RegistrationPolicy = RegistrationPolicy.OPEN
    access_token_ttl_seconds: int = Field(900, ge=30, le=86400)
    refresh_token_ttl_days: int = Field(14, ge=1, le=365)
    login_limit_per_account: int = Field(10, ge=1)
    login_limit_per_ip: int = Field(50, ge=1)
    login_window_seconds: int = Field(300, ge=1)
    audit_retention_days: int = Field(365, ge=1)
    maintenance_interval_seconds: int = Field(3600, ge=5)

    admin_username: str | None = None
    admin_password: str | None = None
    admin_email: str | None = None

    # Environments: the in-process agent of embedded mode and its runtime.
    runtime: Literal["auto", "docker", "local", "memory", "kubernetes"] = "auto"
    # runtime "kubernetes" (adapters/runtime/kubernetes_runtime.py, README "Kubernetes"):
    kubeconfig: str = ""  # a kubeconfig path; empty: the in-cluster service account
    kube_namespace: str = "remotegpu"  # one namespace; objects carry the installation's scope label
    kube_storage_class: str = ""  # the disks' storage class; empty: the cluster's default
    kube_service_type: Literal["NodePort", "LoadBalancer", "ClusterIP"] = "NodePort"  # how SSH is published
    kube_image_pull_secret: str = ""  # a dockerconfigjson Secret in the namespace, added to every Pod
    kube_runtime_class: str = ""  # e.g. "nvidia"
    kube_gpu_resource: str = "nvidia.com/gpu"
    kube_start_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    kube_mount_image: str = ""  # the image of data mounts' init containers (the platform's own image)
    kube_platform_url: str = ""  # where those init containers reach the platform (empty: REMOTEGPU_PUBLIC_URL)
    embedded_agent: bool = True
    agent_name: str | None = None  # default: this machine's hostname
    agent_fake_gpus: str | None = None  # e.g. "4xNVIDIA A100-SXM4-80GB" on machines without GPUs
    ssh_host: str | None = None  # address users reach SSH ports on; default: the HTTP host
    # The SSH gateway (adapters/access/ssh_gateway.py, README "SSH gateway"): one SSH port for
    # every environment, served by `remotegpu serve` when a port is set. Unset: off, users
    # reach each environment's own published port.
    ssh_gateway_port: int | None = Field(None, ge=1, le=65535)
    ssh_gateway_bind: str = "0.0.0.0"
    # Its persistent host key (made on first start); default <data_dir>/ssh_gateway_host_key.
    # Replicas behind one address must share this file.
    ssh_gateway_host_key: Path | None = None
    # The name users are told to connect to; default: ssh_host, else the HTTP host.
    ssh_gateway_host: str | None = None
    # Live gateway sessions are checked this often (keys, accounts, memberships, the environment).
    ssh_gateway_recheck_seconds: float = Field(2.0, gt=0, le=60)
    # Record interactive (pty) sessions through the gateway as asciicast v2 files in the
    # platform's object storage (replayable by admins); the login banner announces it.
    ssh_gateway_record: bool = False
    # Where the platform reaches the embedded host's private services (Jupyter is published there only).
    agent_private_address: str = "127.0.0.1"
    base_image: str = "remotegpu/base:latest"
    # The desktop variant (deploy/images/build-desktop.sh) listed in the catalog; empty: not listed.
    desktop_image: str = ""
    # Comma-separated glob patterns of the images environments may use (the base image always may).
    allowed_images: str = "remotegpu/*"
    # /metrics: this bearer token (Prometheus' scrape config); unset → platform admins only.
    metrics_token: str | None = None
    # Containers carry this label so two platforms (or tests) on one Docker daemon never adopt each other's.
    # Default: this installation's id, generated once in the data dir (see entrypoints/installation.py).
    docker_scope: str | None = None
    heartbeat_seconds: float = Field(5.0, gt=0, le=300)
    # Confinement of environment containers (adapters/runtime/docker_hardening.py, egress.py);
    # a remote agent reads the same REMOTEGPU_* variables from its environment.
    pids_limit: int = Field(2048, ge=64)
    egress_deny: str = ""  # IPv4 CIDRs environments may not reach, comma-separated
    egress_internet: bool = True
    sweep_interval_seconds: float = Field(2.0, gt=0, le=300)
    # Every agent may report loopback addresses (tests, single-machine development only);
    # otherwise only the embedded host and hosts an admin created with allow_loopback.
    allow_loopback_agents: bool = False
    # An environment stopping / being deleted on a host offline this long is finished without it.
    stranded_after_seconds: float = Field(600.0, gt=0)
    # Webhooks: CIDRs deliveries may reach although not public (comma-separated, e.g. a
    # receiver on this machine: "127.0.0.1/32"); everything else private is refused (SSRF).
    webhook_allow_cidrs: str = ""
    # How often due webhook deliveries (retries) are looked for; new events are sent at once.
    webhook_dispatch_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Datasets and models (object storage). "local": files under storage_dir (default
    # <data_dir>/storage); "s3": any S3-compatible store through the minio client.
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    s3_endpoint: str = ""  # http(s)://host[:port]
    s3_bucket: str = "remotegpu"
    s3_region: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_addressing: Literal["auto", "path", "virtual"] = "auto"  # path- or virtual-host-style bucket URLs
    s3_verify_tls: bool = True
    # Browser origins allowed to use presigned URLs (bucket CORS, set at the first upload):
    # comma-separated; empty: the origin of public_url when set, else the bucket is left alone.
    s3_cors_origins: str = ""
    # An upload untouched this long is abandoned (cleaned); no blob younger than this is collected.
    storage_upload_grace_hours: float = Field(24.0, gt=0)
    # Presigned URLs (downloads, parts sent straight to S3) are valid this long.
    storage_presign_seconds: int = Field(3600, ge=60, le=7 * 86400)
    # The embedded agent's cache of mounted versions (remote agents: --storage-cache-gib).
    storage_cache_gib: float = Field(100.0, gt=0)
    # Billing (application/billing). Off by default: usage is metered and rated (prices
    # start empty = free) but nothing is refused or stopped for money.
    billing_enabled: bool = False
    billing_tick_seconds: float = Field(60.0, gt=0, le=3600)  # metering pass: segments rated, ledger charged
    billing_arrears_delete_days: int = Field(15, ge=1, le=3650)  # disks of a workspace in arrears this long are deleted
    billing_currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    # Monitoring (see README "Monitoring"): the agent's collection interval, where history
    # is kept (embedded database or Prometheus), retention of each resolution, alert cadence.
    metrics_interval_seconds: float = Field(10.0, ge=1.0, le=300)
    metrics_store: Literal["database", "prometheus"] = "database"
    metrics_prometheus_url: str = ""
    metrics_raw_retention_hours: float = Field(24.0, gt=0)
    metrics_minute_retention_days: float = Field(30.0, gt=0)
    metrics_hour_retention_days: float = Field(365.0, gt=0)
    alert_eval_seconds: float = Field(10.0, gt=0, le=300)
    agent_fake_gpu_control: str = ""  # JSON file the fake GPUs' readings are driven from (tests, demos)
    # Training jobs' logs are kept this long after the job ended (then deleted).
    job_log_retention_days: int = Field(30, ge=1)

    # Workspaces. Quota every workspace has until an admin sets its own; each user's cap over
    # all the workspaces they own (admin-editable per user); empty or "unlimited" = no limit.
    default_quota_gpus: int | None = Field(8, ge=0)
    default_quota_environments: int | None = Field(10, ge=0)
    default_quota_cpu_cores: int | None = Field(64, ge=0)
    default_quota_memory_gib: int | None = Field(512, ge=0)
    default_quota_storage_gib: int | None = Field(500, ge=0)
    user_quota_gpus: int | None = Field(8, ge=0)
    user_quota_environments: int | None = Field(20, ge=0)
    user_quota_cpu_cores: int | None = Field(128, ge=0)
    user_quota_memory_gib: int | None = Field(1024, ge=0)
    user_quota_storage_gib: int | None = Field(1000, ge=0)
    user_quota_workspaces: int | None = Field(5, ge=0)  # team workspaces one user may own
    workspace_creation: Literal["anyone", "admins"] = "anyone"  # who may create team workspaces
    workspace_invitation_days: int = Field(7, ge=1, le=365)

    @field_validator("default_quota_gpus", "default_quota_environments", "default_quota_cpu_cores",
                     "default_quota_memory_gib", "default_quota_storage_gib", "user_quota_gpus",
                     "user_quota_environments", "user_quota_cpu_cores", "user_quota_memory_gib",
                     "user_quota_storage_gib", "user_quota_workspaces", mode="before")
    @classmethod
    def _unlimited_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("", "none", "unlimited") else v

    # Email notifications (application/notifications): the operator's SMTP server.
    # No host → the email channel is off (said at start-up); in-app notifications still work.
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "RemoteGPU <noreply@localhost>"
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"  # "tls": implicit TLS (port 465)
    smtp_timeout_seconds: float = Field(15.0, gt=0, le=120)

    # Sign-in against LDAP / Active Directory (adapters/identity/ldap_directory.py).
    # No URL → directory sign-in is off. See README "Sign in with LDAP".
    ldap_url: str | None = None
    ldap_user_base: str = ""
    ldap_user_filter: str = "(uid={login})"
    ldap_bind_dn: str | None = None
    ldap_bind_password: str | None = None
    ldap_group_base: str | None = None
    ldap_group_filter: str = "(member={dn})"
    ldap_username_attribute: str = "uid"
    ldap_email_attribute: str = "mail"
    ldap_name_attribute: str = "cn"
    ldap_start_tls: bool = False
    ldap_admin_groups: str = ""  # comma-separated group cns whose members are platform admins
    # group=workspace_id:role pairs, comma-separated: members of the group get the role there
    ldap_workspace_groups: str = ""
    local_passwords: bool = True  # false: only the directory signs people in; registration closed
    # Sign-in with an OpenID Connect provider (adapters/identity/oidc_client.py). No issuer → off.
    oidc_issuer: str | None = None
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_display_name: str = "SSO"  # the login page's button: "Sign in with {name}"
    oidc_scopes: str = "openid email profile"
    oidc_username_claim: str = "preferred_username"
    oidc_groups_claim: str = "groups"
    oidc_admin_groups: str = ""
    oidc_workspace_groups: str = ""

    @field_validator("ldap_workspace_groups", "oidc_workspace_groups")
    @classmethod
    def _group_grants(cls, v: str) -> str:
        for pair in filter(None, (p.strip() for p in v.split(","))):
            group, _, target = pair.partition("=")
            workspace, _, role = target.partition(":")
            if not group or not workspace or role not in ("admin", "member", "viewer"):
                raise ValueError(f"{pair!r}: expected group=workspace_id:role, role admin, member or viewer")
        return v

    @model_validator(mode="after")
    def _ldap_complete(self) -> "Settings":
        if self.ldap_url and not self.ldap_user_base:
            raise ValueError("REMOTEGPU_LDAP_USER_BASE is required with REMOTEGPU_LDAP_URL")
        if not self.local_passwords and not self.ldap_url and not self.oidc_issuer:
            raise ValueError("REMOTEGPU_LOCAL_PASSWORDS=false needs another way in (REMOTEGPU_LDAP_URL or REMOTEGPU_OIDC_ISSUER)")
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("REMOTEGPU_OIDC_CLIENT_ID and REMOTEGPU_OIDC_CLIENT_SECRET are required with REMOTEGPU_OIDC_ISSUER")
        return self

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Cheaper argon2 for tests and benchmarks that create many users; never in production.
    password_hash_profile: Literal["default", "fast"] = "default"

    # Logins and registration (issue 10): a limit per account from all addresses together,
    # registrations per address, argon2's thread pool, and the reverse proxies whose
    # X-Forwarded-For is believed (comma-separated IPs/CIDRs; default none: the TCP peer).
    login_limit_per_account_all_ips: int = Field(100, ge=1)
    register_limit_per_ip: int = Field(10, ge=1)
    register_window_seconds: int = Field(3600, ge=1)
    password_hash_workers: int = Field(2, ge=1, le=64)
    trusted_proxies: str = ""

    # SMS notifications: an Aliyun-style SMS API (adapters/notifications/aliyun_sms.py) or a
    # Tencent Cloud-style one (tencent_sms.py: access key id/secret are its SecretId/SecretKey,
    # sms_app_id its SmsSdkAppId; endpoint and region default to Tencent's). Unset
    # provider → no SMS channel. Templates: the provider's template codes for the verification
    # code (variable ${code}) and for notifications (variable ${title}).
    sms_provider: Literal["", "aliyun", "tencent"] = ""
    sms_endpoint: str = "https://dysmsapi.aliyuncs.com/"
    sms_region: str = "cn-hangzhou"
    sms_access_key_id: str = ""
    sms_access_key_secret: str = ""
    sms_sign_name: str = ""
    sms_template_verify: str = ""
    sms_template_notify: str = ""
    sms_app_id: str = ""

    @model_validator(mode="after")
    def _sms_complete(self) -> "Settings":
        if self.sms_provider:
            missing = [k for k in ("sms_access_key_id", "sms_access_key_secret", "sms_sign_name", "sms_template_verify")
                       + (("sms_app_id",) if self.sms_provider == "tencent" else ()) if not getattr(self, k)]
            if missing:
                raise ValueError(f"REMOTEGPU_SMS_PROVIDER={self.sms_provider} also needs "
                                 + ", ".join("REMOTEGPU_" + k.upper() for k in missing))
        return self

    # Support tickets (application/support): business hours the SLA clock counts in, targets per
    # priority as PRIORITY=FIRST_RESPONSE/RESOLUTION in business hours (h) or minutes (m),
    # and the automations' timers (calendar days).
    support_business_hours: str = "mon-fri 09:00-18:00"
    support_timezone: str = "UTC"
    support_sla_targets: str = "urgent=1h/4h,high=4h/16h,normal=8h/40h,low=24h/80h"
    support_sla_warn_percent: int = Field(80, ge=1, le=99)
    support_close_solved_days: float = Field(4.0, gt=0, le=365)
    support_remind_pending_days: float = Field(3.0, gt=0, le=365)
    support_solve_pending_days: float = Field(7.0, gt=0, le=365)
    support_sweep_interval_seconds: float = Field(60.0, gt=0, le=3600)
    # Ticket attachments (bytes in the object store, REMOTEGPU_STORAGE_*): at most this size
    # each; closed tickets are deleted with their comments and files after this many days (0: kept).
    support_attachment_max_bytes: int = Field(10 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    support_retention_days: float = Field(0.0, ge=0, le=36500)

    @field_validator("support_sla_targets")
    @classmethod
    def _sla_targets(cls, v: str) -> str:
        from remotegpu.domain.support.sla import parse_targets

        parse_targets(v)  # CalendarError is a ValueError: one line naming the key
        return v

    @field_validator("support_business_hours")
    @classmethod
    def _business_hours(cls, v: str) -> str:
        from remotegpu.domain.support.calendar import BusinessHours

        BusinessHours.parse(v)
        return v

    @field_validator("support_timezone")
    @classmethod
    def _support_timezone(cls, v: str) -> str:
        from remotegpu.domain.support.calendar import BusinessHours

        BusinessHours.parse("24x7", v)
        return v

    @model_validator(mode="after")
    def _pending_timers(self) -> "Settings":
        if self.support_remind_pending_days >= self.support_solve_pending_days:
            raise ValueError("REMOTEGPU_SUPPORT_REMIND_PENDING_DAYS must be less than REMOTEGPU_SUPPORT_SOLVE_PENDING_DAYS")
        return self

    # Images (issue 15): the registry v2 images are pushed to and pulled from. Unset: the
    # catalog holds the base image only, and saves and builds are refused. Its credentials
    # stay on the server: agents get them for a pull or a job's push, users never see them.
    registry_url: str = ""  # "127.0.0.1:5000", "http://…", "https://registry.lab"
    registry_username: str = ""  # pushes (and pulls, unless the pull pair is set)
    registry_password: str = ""
    registry_pull_username: str = ""  # a read-only account (Harbor: a pull-only robot) for agents' pulls
    registry_pull_password: str = ""
    registry_namespace: str = Field("remotegpu", pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
    # Token auth (application/images/registry_access.py): the platform is the registry's
    # token issuer. Set the key (PEM, EC P-256 or RSA; `remotegpu registry-keygen DIR`
    # writes one with its certificate) and run the registry with `auth: token:` realm
    # <public URL>/api/v1/registry/token, this service and issuer, and rootcertbundle =
    # the key's certificate. Agents then get per-host credentials valid
    # registry_credential_ttl_seconds, traded at the realm for tokens valid
    # registry_token_ttl_seconds; the username/password pairs above are not used.
    registry_token_key: str = ""  # path of the PEM private key; unset: static credentials
    registry_token_service: str = "remotegpu-registry"
    registry_token_issuer: str = "remotegpu"
    registry_token_ttl_seconds: int = Field(300, ge=30, le=3600)
    registry_credential_ttl_seconds: int = Field(3600, ge=300, le=86400)

    @field_validator("registry_token_key")
    @classmethod
    def _registry_token_key(cls, v: str) -> str:
        """A readable EC P-256 or RSA private key (PEM), checked at start-up, not at the first pull."""
        if not v:
            return v
        from remotegpu.adapters.images.registry_token import JwtRegistryTokenSigner

        try:
            JwtRegistryTokenSigner.from_file(v, issuer="-", service="-")
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"not a usable registry token key: {exc}") from None
        return v

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _cidr_list(cls, v: Any) -> str:
        from remotegpu.entrypoints.http.client_ip import parse_networks

        text = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v or "")
        return ",".join(str(n) for n in parse_networks(text))

    @field_validator("webhook_allow_cidrs", mode="before")
    @classmethod
    def _webhook_cidrs(cls, v: Any) -> str:
        from remotegpu.domain.webhooks.addresses import parse_cidrs

        text = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v or "")
        return ",".join(str(n) for n in parse_cidrs(text))  # a bad CIDR fails at start, not at the first delivery

    @field_validator("database_url", "redis_url", "secret_key", "public_url", "agent_fake_gpus", "agent_name", "ssh_host",
                     "metrics_token", "smtp_host", "smtp_username", "smtp_password", "ldap_url", "ldap_bind_dn",
                     "ldap_bind_password", "ldap_group_base", "oidc_issuer", "ssh_gateway_port", "ssh_gateway_host_key",
                     "ssh_gateway_host", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+asyncpg://" + v.split("://", 1)[1]
        if v.startswith("sqlite:///"):
            v = "sqlite+aiosqlite:///" + v.removeprefix("sqlite:///")
        if not (v.startswith("postgresql+asyncpg://") or v.startswith("sqlite+aiosqlite:///")):
            raise ValueError("must be postgresql://… or sqlite:///…")
        return v

    @field_validator("egress_deny")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        from remotegpu.adapters.runtime.egress import EgressPolicy

        try:
            return ",".join(EgressPolicy.parse(v).deny)
        except ValueError as exc:  # "REMOTEGPU_EGRESS_DENY: 'lan' is not ...": the key is named already
            raise ValueError(str(exc).split(": ", 1)[-1]) from None

    @model_validator(mode="after")
    def _s3_complete(self) -> "Settings":
        if self.storage_backend == "s3" and not (self.s3_endpoint and self.s3_bucket):
            raise ValueError("storage_backend=s3 needs s3_endpoint and s3_bucket")
        return self

    @model_validator(mode="after")
    def _apps_domain_apart(self) -> "Settings":
        """App hosts must not be the console's host nor share it as a parent domain."""
        from urllib.parse import urlsplit

        domain = self.apps_domain.strip().strip(".").lower()
        if not domain or any(not label for label in domain.split(".")):
            raise ValueError("REMOTEGPU_APPS_DOMAIN must be a DNS name such as apps.example.com")
        console = (urlsplit(self.public_url).hostname or "") if self.public_url else self.http_host
        console = "127.0.0.1" if console in ("", "0.0.0.0", "::", "localhost") and not self.public_url else console.lower()
        if console == domain or console.endswith("." + domain):
            raise ValueError(f"REMOTEGPU_APPS_DOMAIN={domain} is the console's host ({console}) or a parent of it; "
                             "give app hosts a domain of their own (e.g. apps.example.com)")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'remotegpu.db').resolve()}"

    def effective_secret_key(self) -> str:
        """The configured key, or one generated once and kept (0600) in the data dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


    def effective_docker_scope(self) -> str:
        """REMOTEGPU_DOCKER_SCOPE, or this installation's id (kept in the data dir)."""
        if self.docker_scope and self.docker_scope.strip():
            return self.docker_scope.strip()
        from remotegpu.entrypoints.installation import installation_id

        return installation_id(self.data_dir, legacy_marker=self.data_dir / "agent" / "agent-credentials.json")


class ConfigError(Exception):
    """Configuration is unusable; the message is one line naming the key."""


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"REMOTEGPU_CONFIG: file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:  # KEY=VALUE lines, REMOTEGPU_ prefix optional
        data = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                data[k.strip()] = v.strip().strip('"')
    return {k.lower().removeprefix("remotegpu_"): v for k, v in data.items()}


def load_settings(**overrides: Any) -> Settings:
    """Environment wins over the config file (REMOTEGPU_CONFIG); explicit overrides win over both."""
    file_values: dict[str, Any] = {}
    if cfg := os.environ.get("REMOTEGPU_CONFIG"):
        file_values = _read_file(Path(cfg))
    env_keys = {k.lower().removeprefix("remotegpu_") for k in os.environ if k.startswith("REMOTEGPU_")}
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update(overrides)
    try:
        return Settings(**init)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "REMOTEGPU_" + str(err["loc"][0]).upper() if err["loc"] else "REMOTEGPU_*"
        raise ConfigError(f"invalid configuration: {key}: {err['msg']} (got {err.get('input')!r})") from None


def load_settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"remotegpu: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
