"""JSON forms of the storage catalog's nested values (shared by the SQL and memory catalogs)."""

from __future__ import annotations

import json
from dataclasses import asdict

from remotegpu.domain.storage.models import FileEntry, ModelInfo, PendingBlob


def files_json(files: list[FileEntry]) -> str:
    return json.dumps([[f.path, f.size, f.sha256] for f in files], separators=(",", ":"))


def files_of(raw: str) -> list[FileEntry]:
    return [FileEntry(p, s, h) for p, s, h in json.loads(raw)]


def pending_json(pending: dict[str, PendingBlob]) -> str:
    return json.dumps({k: {**asdict(v), "parts": {str(n): list(e) for n, e in v.parts.items()}} for k, v in pending.items()},
                      separators=(",", ":"))


def pending_of(raw: str, *, only: str | None = None) -> dict[str, PendingBlob]:
    found = {}
    for k, v in json.loads(raw).items():
        if only is not None and k != only:
            continue
        v["parts"] = {int(n): (e[0], e[1]) for n, e in v["parts"].items()}
        found[k] = PendingBlob(**v)
    return found


def model_json(model: ModelInfo | None) -> str | None:
    return None if model is None else json.dumps(asdict(model), separators=(",", ":"))


def model_of(raw: str | None) -> ModelInfo | None:
    return None if raw is None else ModelInfo(**json.loads(raw))
