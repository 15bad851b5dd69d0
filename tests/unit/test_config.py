import subprocess
import sys

import pytest

from remotegpu.entrypoints.config import ConfigError, load_settings


def test_bad_value_names_the_key(monkeypatch):
    monkeypatch.setenv("REMOTEGPU_HTTP_PORT", "eighty")
    with pytest.raises(ConfigError, match="REMOTEGPU_HTTP_PORT"):
        load_settings()


def test_bad_database_url_names_the_key(monkeypatch):
    monkeypatch.setenv("REMOTEGPU_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError, match="REMOTEGPU_DATABASE_URL"):
        load_settings()


def test_registry_token_key_is_checked_at_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTEGPU_REGISTRY_TOKEN_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="REMOTEGPU_REGISTRY_TOKEN_KEY"):
        load_settings()
    (tmp_path / "not-a.key").write_text("not a key")
    monkeypatch.setenv("REMOTEGPU_REGISTRY_TOKEN_KEY", str(tmp_path / "not-a.key"))
    with pytest.raises(ConfigError, match="REMOTEGPU_REGISTRY_TOKEN_KEY"):
        load_settings()
    from remotegpu.adapters.images.registry_token import make_key_and_certificate

    (tmp_path / "good.key").write_bytes(make_key_and_certificate()[0])
    monkeypatch.setenv("REMOTEGPU_REGISTRY_TOKEN_KEY", str(tmp_path / "good.key"))
    assert load_settings().registry_token_key == str(tmp_path / "good.key")


def test_start_up_with_a_bad_value_prints_one_line_and_exits(tmp_path):
    env = {"REMOTEGPU_HTTP_PORT": "99999", "REMOTEGPU_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "REMOTEGPU_HTTP_PORT" in lines[0]


def test_config_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "remotegpu.toml"
    cfg.write_text('http_port = 9001\nregistration_policy = "closed"\n')
    monkeypatch.setenv("REMOTEGPU_CONFIG", str(cfg))
    monkeypatch.setenv("REMOTEGPU_HTTP_PORT", "9002")
    s = load_settings()
    assert s.http_port == 9002 and s.registration_policy.value == "closed"


def test_secret_key_is_generated_once_and_kept(tmp_path):
    s = load_settings(data_dir=tmp_path)
    key = s.effective_secret_key()
    assert len(key) > 40 and load_settings(data_dir=tmp_path).effective_secret_key() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_postgres_url_gets_the_async_driver():
    s = load_settings(database_url="postgresql://u:p@h/db")
    assert s.database_url == "postgresql+asyncpg://u:p@h/db"
