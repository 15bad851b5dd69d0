"""AgentCredentialStore in a file: ``<state_dir>/agent-credentials.json``, mode 0600."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "agent-credentials.json"


class FileCredentialStore:
    """Keeps the agent's (host_id, agent_token) across restarts.

    Written atomically (temporary file + rename) with mode 0600 in a 0700 directory;
    a file that cannot be read or parsed is logged and treated as absent.
    """

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILE_NAME

    def load(self) -> tuple[str, str] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable agent credentials %s: %s", self.path, exc)
            return None
        host_id = data.get("host_id") if isinstance(data, dict) else None
        token = data.get("agent_token") if isinstance(data, dict) else None
        if not (isinstance(host_id, str) and host_id and isinstance(token, str) and token):
            log.warning("ignoring malformed agent credentials %s", self.path)
            return None
        return host_id, token

    def save(self, host_id: str, agent_token: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".agent-credentials.", dir=self.state_dir)  # created 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"host_id": host_id, "agent_token": agent_token}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
