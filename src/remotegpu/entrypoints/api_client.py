"""The small JSON client the scripting CLIs (`remotegpu images|billing …`) share:
stdlib only, Bearer token from ``args.token``, the server at ``args.server``, and the
project's error format turned into one readable line (ApiError)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(Exception):
    pass


def request_bytes(args, method: str, path: str, body: dict | None = None, query: dict | None = None) -> bytes:
    query = {k: v for k, v in (query or {}).items() if v is not None}
    url = args.server.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            error = json.loads(raw)["error"]
            raise ApiError(f"{exc.code} {error.get('code')}: {error.get('message')}") from None
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"{exc.code}: {raw[:300].decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach {args.server}: {exc.reason}") from None


def call(args, method: str, path: str, body: dict | None = None, **query) -> Any:
    raw = request_bytes(args, method, path, body, query)
    return json.loads(raw) if raw else None
