"""The data dir holds secrets: the SQLite database (Jupyter tokens, token hashes, sealed
variables), the generated secret key, the platform's SSH key, the embedded agent's
credentials. Only the server's user may read any of it.

``secure_data_dir`` makes it so and is run at every start-up, so that installs made
before these modes were enforced are fixed too: the dir 0700, every file in it (and in
its ``agent`` sub-dir) 0600. A missing SQLite file is created empty with 0600 first:
SQLite gives its ``-wal``/``-shm`` companions the database file's mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("remotegpu.data_dir")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Sub-dirs with secrets of their own (the embedded agent's credentials).
_PRIVATE_SUBDIRS = ("agent",)


def secure_data_dir(data_dir: Path, *, create: bool, sqlite_file: Path | None = None) -> None:
    """Tighten ``data_dir`` (created when ``create``; left alone when missing otherwise)."""
    if not data_dir.exists():
        if not create:
            return
        data_dir.mkdir(parents=True, mode=DIR_MODE)
    _chmod(data_dir, DIR_MODE)
    if sqlite_file is not None and not sqlite_file.exists():
        sqlite_file.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.close(os.open(sqlite_file, os.O_WRONLY | os.O_CREAT, FILE_MODE))  # an empty file is an empty database
    dirs = [data_dir] + [data_dir / d for d in _PRIVATE_SUBDIRS if (data_dir / d).is_dir()]
    for directory in dirs:
        if directory is not data_dir:
            _chmod(directory, DIR_MODE)
        for entry in directory.iterdir():
            if entry.is_file() and not entry.is_symlink():
                _chmod(entry, FILE_MODE)
    if sqlite_file is not None:
        for path in (sqlite_file, *(sqlite_file.with_name(sqlite_file.name + s) for s in ("-wal", "-shm", "-journal"))):
            if path.is_file():
                _chmod(path, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError as exc:  # e.g. owned by another user: say so, the server still starts
        log.warning("cannot restrict %s to %o: %s", path, mode, exc)


def sqlite_file_of(database_url: str) -> Path | None:
    """The file behind a ``sqlite+aiosqlite:///path`` URL (None for PostgreSQL or memory)."""
    prefix = "sqlite+aiosqlite:///"
    if not database_url.startswith(prefix):
        return None
    path = database_url.removeprefix(prefix).split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None
