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

from pydantic import Field, ValidationError, field_validator
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
    runtime: Literal["auto", "docker", "local", "memory"] = "auto"
    embedded_agent: bool = True
    agent_name: str | None = None  # default: this machine's hostname
    agent_fake_gpus: str | None = None  # e.g. "4xNVIDIA A100-SXM4-80GB" on machines without GPUs
    ssh_host: str | None = None  # address users reach SSH ports on; default: the HTTP host
    # Where the platform reaches the embedded host's private services (Jupyter is published there only).
    agent_private_address: str = "127.0.0.1"
    # The platform's own SSH key (web terminal on remote hosts); default: generated once in data_dir.
    platform_ssh_key: Path | None = None
    base_image: str = "remotegpu/base:latest"
    # Containers carry this label so two platforms (or tests) on one Docker daemon never adopt each other's.
    # Default: this installation's id, generated once in the data dir (see entrypoints/installation.py).
    docker_scope: str | None = None
    heartbeat_seconds: float = Field(5.0, gt=0, le=300)
    sweep_interval_seconds: float = Field(2.0, gt=0, le=300)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Cheaper argon2 for tests and benchmarks that create many users; never in production.
    password_hash_profile: Literal["default", "fast"] = "default"

    @field_validator("database_url", "redis_url", "secret_key", "public_url", "agent_fake_gpus", "agent_name", "ssh_host",
                     "platform_ssh_key", mode="before")
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
        self.data_dir.mkdir(parents=True, exist_ok=True)
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
