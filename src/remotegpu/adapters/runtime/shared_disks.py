"""Workspace shared disks whose size is enforced: an ext4 filesystem in a sparse image file,
on a loop device, given to Docker as a ``local`` volume (``type=ext4``, ``device=…``).

Docker's default volumes have no size (overlay2 on ext4 has no quota for named volumes),
so a size that is only recorded is not enforced. Here it is: writes past the size fail
with ENOSPC inside every environment that mounts the disk, as on a real disk. What it
takes on the host: root with loop devices (``/dev/loop-control``), ``losetup``,
``mkfs.ext4`` and ``resize2fs`` (e2fsprogs, util-linux): what the agent has when it runs
as root on the host. Where that is missing the runtime falls back to a plain volume,
labelled ``remotegpu.disk_enforced=false``, and logs why (the size then counts against
the quota but is not enforced on the host).

- The image ``<dir>/<workspace>.img`` is sparse: it takes host disk as data is written,
  up to the size. Growing the size grows it (``losetup -c`` + ``resize2fs``, online);
  a smaller size is recorded for the quota but the filesystem is not shrunk (ext4
  shrinks only offline; an operator can do it).
- The volume names the device through a symlink ``<dir>/<workspace>.dev`` that the
  runtime points at the loop device each time it makes sure the disk is there (before
  each start): after a reboot the image is attached again, perhaps to another
  ``/dev/loopN``, and the volume still finds it. The kernel follows the symlink when
  Docker mounts the volume (at the first container's start; it unmounts after the last).
- Per host: another host's environments of the workspace get another disk (README).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("remotegpu.runtime.shared_disks")
GiB = 1024**3
_TOOLS = ("losetup", "mkfs.ext4", "resize2fs", "e2fsck")


class SharedDiskError(RuntimeError):
    pass


def _run(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise SharedDiskError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc.returncode}") from None
    return done.stdout.strip()


class LoopDisks:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._problem: str | None = None
        self._checked = False

    def problem(self) -> str | None:
        """Why sizes cannot be enforced on this host (None: they can). Checked once."""
        if not self._checked:
            self._checked = True
            missing = [t for t in _TOOLS if shutil.which(t) is None]
            if missing:
                self._problem = f"missing {', '.join(missing)} (install util-linux and e2fsprogs)"
            elif not os.path.exists("/dev/loop-control"):
                self._problem = "no loop devices (/dev/loop-control)"
            elif os.geteuid() != 0:
                self._problem = "the agent does not run as root (loop devices need it)"
        return self._problem

    def image(self, workspace_id: str) -> Path:
        return self.directory / f"{workspace_id}.img"

    def link(self, workspace_id: str) -> Path:
        return self.directory / f"{workspace_id}.dev"

    def attached(self, image: Path) -> str | None:
        out = _run("losetup", "-j", str(image), "-O", "NAME", "-n") if image.exists() else ""
        return out.splitlines()[0].strip() if out else None

    def ensure(self, workspace_id: str, size_gib: int) -> Path:
        """The image made (or grown) and attached; returns the symlink the volume mounts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        image, size = self.image(workspace_id), size_gib * GiB
        if not image.exists():
            partial = image.with_suffix(".new")
            with open(partial, "wb") as f:
                f.truncate(size)  # sparse: no host disk taken yet
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", f"rgpu-{workspace_id[:8]}", str(partial))
            os.replace(partial, image)
        device = self.attached(image) or _run("losetup", "--find", "--show", str(image))
        if image.stat().st_size < size:  # grown: the file, the device, then the filesystem
            with open(image, "r+b") as f:
                f.truncate(size)
            _run("losetup", "-c", device)
            try:
                _run("resize2fs", device)
            except SharedDiskError:  # not mounted: resize2fs wants a fresh check first
                _run("e2fsck", "-f", "-y", device)
                _run("resize2fs", device)
        link = self.link(workspace_id)
        if not link.is_symlink() or os.readlink(link) != device:
            tmp = link.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(device)
            os.replace(tmp, link)
        return link

    def release(self, workspace_id: str, *, delete: bool = False) -> None:
        """Detach the loop device (the volume must not be mounted: no container running);
        ``delete``: remove the image too (its data is gone)."""
        image = self.image(workspace_id)
        listed = _run("losetup", "-j", str(image), "-O", "NAME", "-n") if image.exists() else ""
        for device in listed.split():
            _run("losetup", "-d", device)
        self.link(workspace_id).unlink(missing_ok=True)
        if delete:
            image.unlink(missing_ok=True)
