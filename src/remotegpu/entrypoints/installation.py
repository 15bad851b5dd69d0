"""The installation's identity: a random id generated once and kept in a state directory.

It is the default Docker scope (``remotegpu.scope`` on every container, volume and
snapshot an agent makes), so two installations sharing one Docker daemon never list,
adopt, stop or remove each other's environments. ``REMOTEGPU_DOCKER_SCOPE`` (or the
agent's ``--docker-scope``) overrides it.

Upgrades: before this id existed every agent labelled its containers ``default``. A
state directory that already holds the agent's credentials but no id is such an
installation, so it keeps ``default`` (written down, and logged) and finds its
environments again; a new installation gets a fresh id.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "installation_id"
LEGACY_SCOPE = "default"
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def installation_id(directory: Path, *, legacy_marker: Path | None = None) -> str:
    """The id kept in ``directory / installation_id``, created (0600) on first use.

    ``legacy_marker``: a file whose presence means this directory served an
    installation from before the id (its agent credentials): it keeps ``default``."""
    path = Path(directory) / FILE_NAME
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if not _VALID.match(value):
            raise ValueError(f"{path}: not an installation id ({value!r}); remove the file to generate one")
        return value
    legacy = legacy_marker is not None and Path(legacy_marker).exists()
    value = LEGACY_SCOPE if legacy else f"rgpu-{uuid.uuid4().hex}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation was first: take its id
        return installation_id(directory, legacy_marker=legacy_marker)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    if legacy:
        log.warning("installation id %r kept for containers made before installation ids (%s)", value, path)
    return value
