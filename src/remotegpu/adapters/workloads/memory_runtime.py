"""JobRuntime in memory (unit and API tests): nodes "run" until a test ends them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from remotegpu.application.workloads.ports import JobNodeSpec, JobNodeState


class InMemoryJobRuntime:
    def __init__(self) -> None:
        self.specs: dict[str, JobNodeSpec] = {}
        self.status: dict[str, str] = {}
        self.exit_codes: dict[str, int | None] = {}
        self.logs: dict[str, bytearray] = {}
        self.fail_start: str | None = None  # message: ensure_running raises it
        # node id → {container path → {relative file path → bytes}}: what ``export`` finds.
        self.files: dict[str, dict[str, dict[str, bytes]]] = {}

    async def ensure_running(self, spec: JobNodeSpec) -> None:
        if self.fail_start:
            raise RuntimeError(self.fail_start)
        if spec.node_id in self.specs:
            return
        self.specs[spec.node_id] = spec
        self.status[spec.node_id] = "running"
        self.logs[spec.node_id] = bytearray()

    async def stop(self, node_id: str) -> None:
        if self.status.get(node_id) == "running":
            self.status[node_id] = "exited"
            self.exit_codes[node_id] = 137

    async def remove(self, node_id: str, keep_network: bool = False) -> None:
        for table in (self.specs, self.status, self.exit_codes, self.logs):
            table.pop(node_id, None)

    async def list(self) -> list[JobNodeState]:
        return [JobNodeState(n, s, self.exit_codes.get(n), "", len(self.logs.get(n, b""))) for n, s in self.status.items()]

    async def export(self, node_id: str, path: str, destination: Path) -> None:
        """Like Docker's archive API: entries ``<basename>/<file>``."""
        found = self.files.get(node_id, {}).get(path) if node_id in self.status else None
        if found is None:
            raise FileNotFoundError(f"{path} does not exist in node 0's container")
        top = PurePosixPath(path).name
        with tarfile.open(destination, "w") as tar:
            for name, data in found.items():
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    async def read_log(self, node_id: str, offset: int, limit: int) -> bytes:
        return bytes(self.logs.get(node_id, b""))[offset: offset + limit]

    # --- test controls ----------------------------------------------------------------
    def write(self, node_id: str, data: bytes) -> None:
        self.logs[node_id] += data

    def exit(self, node_id: str, code: int) -> None:
        self.status[node_id] = "exited"
        self.exit_codes[node_id] = code
