from __future__ import annotations

import uuid


def new_id() -> str:
    """Opaque, unguessable identifiers (uuid4 text) for every aggregate."""
    return str(uuid.uuid4())
