"""The data dir and its secrets are for the server's user only: created 0700/0600, and
an install from before (world-readable files) is fixed at start-up."""

from __future__ import annotations

import os
import stat

from remotegpu.entrypoints.cli import _migrate
from remotegpu.entrypoints.config import load_settings
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.data_dir import secure_data_dir, sqlite_file_of


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_install_is_private(tmp_path):
    data = tmp_path / "data"
    settings = load_settings(data_dir=data, password_hash_profile="fast")
    old = os.umask(0o022)  # a typical umask: files would be 0644, dirs 0755
    try:
        _migrate(settings)  # what `serve` runs first: creates the SQLite file
        build_container(settings)  # generates the secret key
    finally:
        os.umask(old)
    assert mode(data) == 0o700
    assert (data / "remotegpu.db").stat().st_size > 0 and mode(data / "remotegpu.db") == 0o600
    assert mode(data / "secret_key") == 0o600
    for companion in ("remotegpu.db-wal", "remotegpu.db-shm"):
        if (data / companion).exists():
            assert mode(data / companion) == 0o600


def test_an_existing_world_readable_install_is_fixed_at_start_up(tmp_path):
    data = tmp_path / "data"
    (data / "agent").mkdir(parents=True)
    files = [data / "remotegpu.db", data / "remotegpu.db-wal", data / "secret_key", data / "platform_ssh_key",
             data / "agent" / "credentials.json"]
    for f in files:
        f.write_text("x")
        os.chmod(f, 0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "agent", 0o755)
    settings = load_settings(data_dir=data, secret_key="k" * 40)
    build_container(settings)
    assert mode(data) == 0o700 and mode(data / "agent") == 0o700
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_nothing_is_created_for_postgres_or_memory(tmp_path):
    secure_data_dir(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    assert sqlite_file_of("postgresql+asyncpg://u:p@h/db") is None
    assert sqlite_file_of("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file_of(f"sqlite+aiosqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
