"""Paths inside a container, opened from its host without trusting what lies there.

A container's files are its user's (root inside): seen from the host through
``/proc/<pid>/root``, any of them may be a symbolic link, and an absolute link resolves
against the *host's* root when followed from outside. So every component below the
container's root is opened on its own with ``O_NOFOLLOW``: a link anywhere on the way
fails the lookup instead of leading to, say, the host's Docker socket or /etc/shadow.
"""

from __future__ import annotations

import errno
import os
import stat


def open_contained(root: str, path: str) -> int:
    """An ``O_PATH`` descriptor of ``path`` below ``root`` (``/proc/<pid>/root``, the one
    link followed), the final component not followed either. The caller closes it and
    checks what it is (``os.fstat``); ``/proc/self/fd/<n>`` then reaches that very inode."""
    *folders, name = [part for part in path.split("/") if part] or [""]
    if not name or any(part in (".", "..") for part in [*folders, name]):
        raise OSError(errno.EINVAL, f"not a plain path: {path!r}")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for part in folders:
            below = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        return os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def read_contained_file(root: str, path: str, limit: int) -> bytes:
    """The first ``limit`` bytes of the regular file at ``path`` below ``root``; OSError
    when it is missing, not a regular file, or reached through a link."""
    leaf = open_contained(root, path)
    try:
        if not stat.S_ISREG(os.fstat(leaf).st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {path!r}")
        # The magic link goes straight to the inode checked above; nothing is resolved.
        fd = os.open(f"/proc/self/fd/{leaf}", os.O_RDONLY | os.O_NONBLOCK)
    finally:
        os.close(leaf)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)
