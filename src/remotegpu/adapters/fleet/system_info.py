"""SystemInfo of the machine the agent runs on (Linux first, portable fallbacks)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_GIB = 1024**3


class HostSystemInfo:
    """CPU cores, memory and the size of the disk holding ``data_dir`` (the agent's
    state and the local runtime's sandboxes). Never raises: an unreadable size is 0."""

    def __init__(self, data_dir: Path | str = ".", *, meminfo: Path | str = "/proc/meminfo") -> None:
        self._data_dir = Path(data_dir)
        self._meminfo = Path(meminfo)

    def cpu_cores(self) -> int:
        return os.cpu_count() or 1

    def memory_gib(self) -> int:
        try:
            for line in self._meminfo.read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 // _GIB  # the value is in kB
        except (OSError, ValueError, IndexError):
            pass
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // _GIB
        except (AttributeError, OSError, ValueError):
            return 0

    def disk_gib(self) -> int:
        path = self._data_dir.resolve()
        while not path.exists() and path != path.parent:  # not created yet: its file system
            path = path.parent
        try:
            return shutil.disk_usage(path).total // _GIB
        except OSError:
            return 0
