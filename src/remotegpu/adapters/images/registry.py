"""A Docker/OCI registry v2 over HTTP (Debian's docker-registry, distribution, Harbor
used as a plain registry with a robot account): manifests are read and deleted here;
pushes and pulls are Docker's (the agent's engine), with the credentials this holds.

Authentication: HTTP Basic (htpasswd) or the registry's token auth (``WWW-Authenticate:
Bearer realm=…,service=…,scope=…``: a token is fetched from the realm with the same
credentials), or — with a ``signer`` (token auth, the platform being the registry's token
issuer: application/images/registry_access.py) — a token the platform signs itself for
each request's scope, no credential held at all. ``http://`` is used for loopback registries, ``https://`` otherwise unless
the URL says so.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlencode

import aiohttp

from remotegpu.adapters.images.certs_d import ssl_context_for
from remotegpu.application.images.ports import ManifestInfo, RegistryAuth

_ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])


def split_registry_url(url: str) -> tuple[str, str]:
    """``"http://127.0.0.1:5000"`` → (``"http"``, ``"127.0.0.1:5000"``); no scheme: https
    except for loopback hosts (what dockerd does: 127.0.0.0/8 is insecure-allowed)."""
    url = url.strip().rstrip("/")
    if "://" in url:
        scheme, host = url.split("://", 1)
        return scheme, host
    loopback = url.startswith(("127.", "localhost"))
    return ("http" if loopback else "https"), url


class HttpRegistry:
    """``application.images.ports.ImageRegistry`` for one registry."""

    def __init__(self, url: str, *, username: str = "", password: str = "", pull_username: str = "",
                 pull_password: str = "", timeout: float = 30.0, signer: Any = None,
                 certs_dir: str | None = None) -> None:
        self._scheme, self._host = split_registry_url(url)
        self.signer = signer  # token auth: tokens signed here; the pairs below are not used
        self._push = RegistryAuth(self._host, username, password) if username and signer is None else None
        self._pull = RegistryAuth(self._host, pull_username, pull_password) if pull_username and signer is None else self._push
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = ssl_context_for(self._host, certs_dir) if self._scheme == "https" else None

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
        return aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    def sign(self, scope: str, ttl_seconds: int = 300) -> str:
        """A token of the platform's own for ``repository:NAME:ACTIONS`` (token auth only;
        it never leaves the server)."""
        _type, rest = scope.split(":", 1)
        name, _, actions = rest.rpartition(":")
        return self.signer.sign("platform", [{"type": _type, "name": name, "actions": actions.split(",")}], ttl_seconds)

    @property
    def address(self) -> str:
        return self._host

    def reference(self, path: str, tag: str) -> str:
        return f"{self._host}/{path}:{tag}"

    def owns(self, reference: str) -> bool:
        return reference.startswith(self._host + "/")

    def pull_auth(self) -> RegistryAuth | None:
        return self._pull

    def push_auth(self) -> RegistryAuth | None:
        return self._push

    def _split(self, reference: str) -> tuple[str, str]:
        rest = reference[len(self._host) + 1:]
        if "@" in rest:
            path, digest = rest.split("@", 1)
            return path, digest
        path, _, tag = rest.rpartition(":")
        return (path, tag) if path and "/" not in tag else (rest, "latest")

    async def _request(self, session: aiohttp.ClientSession, method: str, path: str, scope: str,
                       headers: dict[str, str]) -> aiohttp.ClientResponse:
        url = f"{self._scheme}://{self._host}{path}"
        auth = self._push
        hdrs = dict(headers)
        if self.signer is not None:
            hdrs["Authorization"] = f"Bearer {self.sign(scope)}"
            return await session.request(method, url, headers=hdrs)
        if auth is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        resp = await session.request(method, url, headers=hdrs)
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status == 401 and challenge.lower().startswith("bearer"):
            resp.release()
            token = await self._token(session, challenge, scope)
            hdrs["Authorization"] = f"Bearer {token}"
            resp = await session.request(method, url, headers=hdrs)
        return resp

    async def _token(self, session: aiohttp.ClientSession, challenge: str, scope: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        query = {k: v for k, v in params.items() if k == "service"}
        query["scope"] = scope
        auth = None
        if self._push is not None:
            auth = aiohttp.BasicAuth(self._push.username, self._push.password)
        async with session.get(f"{realm}?{urlencode(query)}", auth=auth) as resp:
            resp.raise_for_status()
            body = await resp.json()
        return body.get("token") or body.get("access_token") or ""

    async def manifest(self, reference: str) -> ManifestInfo | None:
        path, ref = self._split(reference)
        async with self._session() as session:
            resp = await self._request(session, "GET", f"/v2/{path}/manifests/{ref}", f"repository:{path}:pull",
                                       {"Accept": _ACCEPT})
            async with resp:
                if resp.status == 404:
                    return None
                resp.raise_for_status()
                body = await resp.json(content_type=None)
                digest = resp.headers.get("Docker-Content-Digest", "")
        layers = body.get("layers") or []
        return ManifestInfo(digest=digest, compressed_bytes=sum(int(l.get("size", 0)) for l in layers), layers=len(layers))

    async def delete(self, reference: str) -> bool:
        info = await self.manifest(reference)
        if info is None or not info.digest:
            return False
        path, _ref = self._split(reference)
        async with self._session() as session:
            resp = await self._request(session, "DELETE", f"/v2/{path}/manifests/{info.digest}",
                                       f"repository:{path}:delete", {})
            async with resp:
                if resp.status == 404:
                    return False
                resp.raise_for_status()
        return True
