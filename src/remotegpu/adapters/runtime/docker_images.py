"""Images on a Docker host, for the agent (issue 15): pull with progress and the
registry's credentials, save an environment as an image, build a Dockerfile, push.

**Save** = ``docker export`` of the environment's container (running or stopped; its
volume — /root/workspace — and other mounts are never in an export) streamed through a
filter that drops data and secrets (``domain/images/models.py``: shell histories, SSH
keys and host keys, Jupyter runtime files and tokens, /etc/environment's variables),
then ``docker import``-ed as ONE layer with the config of the image the environment was
made from (entrypoint, variables, ports: never the container's own variables, which
hold its Jupyter token and secret variables). One layer whatever the history: save →
start → save cycles never stack layers toward overlay's limit (~125, moby#25957).
The result is pushed to the platform's registry with the job's credentials.

Blocking docker SDK calls; the agent runs them in threads.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import docker
from docker.errors import DockerException, ImageNotFound, NotFound

from remotegpu.domain.images.models import SAVE_EMPTIED, excluded_from_save

log = logging.getLogger("remotegpu.runtime.docker.images")

Auth = tuple[str, str, str] | None  # (registry, username, password)
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImageSummary:
    id: str
    tags: list[str]
    labels: dict[str, str]


def list_images(client: docker.DockerClient, name: str | None = None, filters: dict | None = None) -> list[ImageSummary]:
    """Images from ONE list call. ``client.images.list`` inspects each image it listed,
    and one removed in between (another environment's snapshot, deleted concurrently)
    fails the whole call with a 500 "layer does not exist"."""
    rows = client.api.images(name=name, filters=dict(filters or {}))
    return [
        ImageSummary(
            row["Id"],
            [t for t in (row.get("RepoTags") or []) if t != "<none>:<none>"],
            dict(row.get("Labels") or {}),
        )
        for row in rows
    ]


class JobCancelled(Exception):
    pass


class JobFailed(Exception):
    pass


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    digest: str
    size_bytes: int
    layers: int


#: The user name of an ``Auth`` whose password is a registry token itself (the platform's
#: own token with token auth): the engine sends it as it is (``registrytoken``).
BEARER = "<registry-token>"


def auth_config(auth: Auth) -> dict[str, str] | None:
    if auth is None:
        return None
    if auth[1] == BEARER:
        return {"registrytoken": auth[2], "serveraddress": auth[0]}
    return {"username": auth[1], "password": auth[2], "serveraddress": auth[0]}


def split_reference(reference: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` → (``host:5000/a/b``, ``tag``)."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, "latest" if not digest else digest


class _Progress:
    """Aggregates Docker's per-layer pull/push progress into one line, reported in 10% steps."""

    def __init__(self, what: str, report: Callable[[str], None]) -> None:
        self.what, self.report = what, report
        self.layers: dict[str, tuple[int, int]] = {}
        self.step = -1

    def feed(self, event: dict[str, Any]) -> None:
        detail = event.get("progressDetail") or {}
        layer = event.get("id")
        if layer and detail.get("total"):
            self.layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer and event.get("status") in ("Pull complete", "Already exists", "Pushed", "Layer already exists",
                                               "Download complete"):
            current, total = self.layers.get(layer, (0, 0))
            self.layers[layer] = (total, total)
        done = sum(c for c, _t in self.layers.values())
        total = sum(t for _c, t in self.layers.values())
        if total <= 0:
            return
        percent = min(100, int(done * 100 / total))
        if percent // 10 > self.step:
            self.step = percent // 10
            self.report(f"{self.what}: {percent}% ({done / 1e6:.0f} of {total / 1e6:.0f} MB)")


def pull(client: docker.DockerClient, reference: str, auth: Auth, progress: Callable[[str], None]) -> None:
    """Pull ``reference`` (with the registry's credentials), reporting progress."""
    repo, tag = split_reference(reference)
    meter = _Progress(f"pulling image {reference}", progress)
    for event in client.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=auth_config(auth)):
        if "error" in event:
            raise JobFailed(str(event.get("error"))[:500])
        meter.feed(event)


def has_image(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
        return True
    except ImageNotFound:
        return False


def push(client: docker.DockerClient, reference: str, auth: Auth, log_line: Callable[[str], None],
         cancelled: Callable[[], bool]) -> str:
    """Push; returns the manifest digest."""
    repo, tag = split_reference(reference)
    meter = _Progress(f"pushing {reference}", log_line)
    digest = ""
    for event in client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth_config(auth)):
        if cancelled():
            raise JobCancelled()
        if "error" in event:
            raise JobFailed(f"push failed: {str(event.get('error'))[:500]}")
        meter.feed(event)
        aux = event.get("aux") or {}
        digest = aux.get("Digest", digest)
    if not digest:
        raise JobFailed("push ended without a digest")
    return digest


class _IterReader(io.RawIOBase):
    """A file over an iterator of byte chunks (``container.export()``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n], self._buffer = self._buffer[:n], self._buffer[n:]
        return n


# --- save: one filtered layer, pushed straight to the registry --------------------------

#: A saved image has at most this many layers: its base's plus one per save. Past it the
#: save flattens everything into one layer (overlay2 stacks at most ~125).
MAX_SAVED_LAYERS = 16
#: Uncompressed tar bytes per gzip member (see ``_LayerPipe``).
_MEMBER = 4 * 1024 * 1024
_SAMPLE = 128 * 1024

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class _CannotLayer(Exception):
    """The changes cannot be one layer on the base (flatten instead)."""


class RegistryClient:
    """The Registry HTTP API v2 (distribution's spec), just what a save needs: blob
    exists / cross-repository mount / streamed upload, manifests and config blobs.
    Basic credentials, or the registry's token auth (``WWW-Authenticate: Bearer``: a
    token for the scopes asked is fetched from the realm with the same credentials)."""

    def __init__(self, host: str, auth: Auth, timeout: float = 600.0) -> None:
        import requests

        from remotegpu.adapters.images.certs_d import mount_on

        scheme = "http" if host.startswith(("127.", "localhost")) else "https"
        if "://" in host:
            scheme, host = host.split("://", 1)
        self.host, self.base, self.auth = host, f"{scheme}://{host}", auth
        self._user = (auth[1], auth[2]) if auth else None
        self._session = requests.Session()
        mount_on(self._session, self.base, host)  # /etc/docker/certs.d/<host>/ CA files, as Docker
        self._timeout = timeout
        self._bearer: dict[str, str] = {}  # scope → token

    def close(self) -> None:
        self._session.close()

    def _url(self, path_or_location: str) -> str:
        return path_or_location if "://" in path_or_location else self.base + path_or_location

    def request(self, method: str, path: str, scopes: tuple[str, ...], *, ok: tuple[int, ...] = (200,),
                **kwargs: Any) -> Any:
        """One request; on a Bearer challenge, a token for ``scopes`` and once more
        (a body that is an iterator can be sent once: callers ask with a cheap request first)."""
        key = " ".join(scopes)
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            if key in self._bearer:
                headers["Authorization"] = f"Bearer {self._bearer[key]}"
                auth = None
            else:
                auth = self._user
            resp = self._session.request(method, self._url(path), headers=headers, auth=auth, timeout=self._timeout,
                                         allow_redirects=method in ("GET", "HEAD"), **kwargs)
            challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status_code == 401 and challenge.lower().startswith("bearer") and attempt == 1:
                self._bearer[key] = self._token(challenge, scopes)
                continue
            if resp.status_code not in ok:
                raise JobFailed(f"registry: {method} {path.split('?')[0]} answered {resp.status_code}: {resp.text[:300]}")
            return resp
        raise AssertionError("unreachable")

    def _token(self, challenge: str, scopes: tuple[str, ...]) -> str:
        import re

        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query: list[tuple[str, str]] = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in scopes]
        resp = self._session.get(params.get("realm", ""), params=query, auth=self._user, timeout=30)
        if resp.status_code != 200:
            raise JobFailed(f"registry token: {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        return body.get("token") or body.get("access_token") or ""

    def manifest(self, repo: str, ref: str) -> tuple[dict[str, Any], str] | None:
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", (f"repository:{repo}:pull",), ok=(200, 404),
                            headers={"Accept": f"{MT_DOCKER_MANIFEST}, {MT_OCI_MANIFEST}"})
        if resp.status_code == 404:
            return None
        import hashlib

        return resp.json(), "sha256:" + hashlib.sha256(resp.content).hexdigest()

    def blob(self, repo: str, digest: str) -> bytes:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", (f"repository:{repo}:pull",)).content

    def has_blob(self, repo: str, digest: str) -> bool:
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}", (f"repository:{repo}:pull",),
                            ok=(200, 404)).status_code == 200

    def mount(self, repo: str, digest: str, source: str) -> bool:
        """Link a blob of ``source`` into ``repo`` (no bytes travel): True when mounted."""
        if source == repo:
            return self.has_blob(repo, digest)
        scopes = (f"repository:{repo}:pull,push", f"repository:{source}:pull")
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", scopes, ok=(201, 202))
        if resp.status_code == 202:  # not mounted; an upload was opened instead
            self.request("DELETE", resp.headers["Location"], scopes, ok=(204, 404))
            return self.has_blob(repo, digest)
        return True

    def upload(self, repo: str, body: Iterator[bytes], digest: Callable[[], str]) -> None:
        """Stream ``body`` as one blob (one chunked PATCH); ``digest()`` is asked once
        the body is sent (it is hashed as it goes)."""
        scopes = (f"repository:{repo}:pull,push",)
        location = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes, ok=(202,)).headers["Location"]
        try:
            resp = self.request("PATCH", location, scopes, ok=(202,), data=body,
                                headers={"Content-Type": "application/octet-stream"})
        except BaseException:
            try:
                self.request("DELETE", location, scopes, ok=(204, 404))
            except Exception:  # noqa: BLE001 - the registry purges stale uploads itself
                pass
            raise
        location = resp.headers["Location"]
        self.request("PUT", location + ("&" if "?" in location else "?") + f"digest={digest()}", scopes, ok=(201,))

    def put_blob(self, repo: str, data: bytes) -> str:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(repo, digest):
            self.upload(repo, iter([data]), lambda: digest)
        return digest

    def put_manifest(self, repo: str, tag: str, manifest: bytes, media_type: str) -> str:
        import hashlib

        self.request("PUT", f"/v2/{repo}/manifests/{tag}", (f"repository:{repo}:pull,push",), ok=(201,),
                     data=manifest, headers={"Content-Type": media_type})
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


class _LayerPipe(io.RawIOBase):
    """What ``tarfile`` writes → the blob's bytes, without a temporary file: the tar is
    cut into 4 MiB pieces, each compressed into its own gzip member (a gzip file may be
    several members one after the other: Docker, containerd and pigz read them as one
    stream) in a thread of its own, and hashed both ways as it goes (the uncompressed
    sha256 is the layer's diff ID, the compressed one the blob's digest).

    A piece whose first 128 KiB do not shrink by 10 % at ``level`` is stored (gzip level
    0: a copy, no CPU spent on what does not compress — model weights, archives, random
    bytes); the rest is compressed at ``level`` (default 1, the fastest)."""

    def __init__(self, level: int, cancelled: Callable[[], bool]) -> None:
        import hashlib
        import queue

        self.level, self.cancelled = level, cancelled
        self.diff, self.blob = hashlib.sha256(), hashlib.sha256()
        self.tar_bytes = self.blob_bytes = 0
        self._piece = bytearray()
        self._raw: Any = queue.Queue(maxsize=4)
        self.out: Any = queue.Queue(maxsize=4)
        self._compressor = threading.Thread(target=self._compress, name="rgpu-save-gzip", daemon=True)
        self._compressor.start()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._piece += b
        if len(self._piece) >= _MEMBER:
            self._raw.put(bytes(self._piece))
            self._piece = bytearray()
        return len(b)

    def finish(self, error: BaseException | None = None) -> None:
        if error is None and self._piece:
            self._raw.put(bytes(self._piece))
        self._piece = bytearray()
        self._raw.put(error or StopIteration())

    def _compress(self) -> None:
        import zlib

        while True:
            piece = self._raw.get()
            if isinstance(piece, BaseException):
                self.out.put(piece)
                return
            try:
                self.diff.update(piece)
                self.tar_bytes += len(piece)
                level = self.level
                if level > 0:
                    sample = zlib.compressobj(level, zlib.DEFLATED, 31)
                    if len(sample.compress(piece[:_SAMPLE]) + sample.flush()) > 0.9 * min(len(piece), _SAMPLE):
                        level = 0
                packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member
                member = packer.compress(piece) + packer.flush()
                self.blob.update(member)
                self.blob_bytes += len(member)
                self.out.put(member)
            except BaseException as exc:  # noqa: BLE001
                self.out.put(exc)
                return

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self.out.get()
            if isinstance(item, StopIteration):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def drain(self) -> None:
        """Unblock the producer after a failed upload."""
        while self._compressor.is_alive() or not self.out.empty():
            try:
                self.out.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                pass


def _relative(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


#: What a file looked like, for telling changed files from their image's: type, size,
#: mtime, mode, owner, link target (the comparison ``docker diff`` makes on a naive driver).
_Entry = tuple[bytes, int, int, int, int, int, str] | None
#: Image ID → its files' entries, for images this process saved (an ID is its config's
#: digest, the same once pulled): the next save of an environment made from one of them
#: finds its changes in the export itself, without ``docker diff`` (which walks the whole
#: filesystem on some hosts: seconds). A few images, newest kept.
_INDEXES: dict[str, dict[str, _Entry]] = {}
_INDEXES_KEPT = 4


def _entry(member: tarfile.TarInfo) -> _Entry:
    return (member.type, member.size, int(member.mtime), member.mode, member.uid, member.gid, member.linkname)


def _remember(image_id: str, index: dict[str, _Entry]) -> None:
    _INDEXES[image_id] = index
    while len(_INDEXES) > _INDEXES_KEPT:
        del _INDEXES[next(iter(_INDEXES))]


class _Layer:
    """What ``_write_layer`` found: counts and the resulting image's index."""

    def __init__(self) -> None:
        self.index: dict[str, _Entry] = {}
        self.kept = self.deleted = self.bytes = 0


def _write_layer(container: Any, sink: tarfile.TarFile, cancelled: Callable[[], bool], layer: _Layer, *,
                 changed: set[str] | None = None, deleted: list[str] | None = None,
                 base_index: dict[str, _Entry] | None = None) -> None:
    """The container's files as one layer into ``sink``, without what a saved image must
    not carry (``excluded_from_save``; ``SAVE_EMPTIED`` emptied). Layered: only what
    changed since the image — the ``changed`` paths and whiteouts for the ``deleted`` ones
    (``docker diff``), or what differs from ``base_index`` (the image's files, whiteouts
    for those gone) — else (flattened) everything."""
    layered = changed is not None or base_index is not None
    source = tarfile.open(fileobj=io.BufferedReader(_IterReader(container.export(chunk_size=_CHUNK)), _CHUNK), mode="r|")
    kept: set[str] = set()
    dropped: set[str] = set()
    seen: set[str] = {""}
    missing = object()
    for member in source:
        if cancelled():
            raise JobCancelled()
        name = _relative(member.name)
        key = name.rstrip("/")
        entry = _entry(member)
        if base_index is not None:
            seen.add(key)
            selected = base_index.get(key, missing) != entry
        else:
            selected = changed is None or key in changed
        if not selected:
            layer.index[key] = entry  # the image's, unchanged
            continue
        if excluded_from_save(member.name) or (member.islnk() and member.linkname.lstrip("/") in dropped):
            dropped.add(name)
            if layered:
                layer.index[key] = None  # the image's own version, if any: never "unchanged"
            continue
        if layered and member.islnk() and _relative(member.linkname) not in kept:
            raise _CannotLayer(f"a hard link to an unchanged file ({name})")
        kept.add(name)
        if member.isfile() and name in SAVE_EMPTIED:
            member.size = 0
            layer.index[key] = _entry(member)
            sink.addfile(member, io.BytesIO(b""))
            continue
        layer.index[key] = entry
        sink.addfile(member, source.extractfile(member) if member.isfile() else None)
        layer.bytes += member.size if member.isfile() else 0
    source.close()
    layer.kept = len(kept)
    if base_index is not None:  # gone since the image: the topmost of each gone subtree
        deleted = [p for p in base_index if p not in seen and p.rpartition("/")[0] in seen]
    for path in deleted or []:
        if excluded_from_save(path):
            continue
        layer.deleted += 1
        parent, _, leaf = path.rpartition("/")
        sink.addfile(tarfile.TarInfo(f"{parent}/.wh.{leaf}" if parent else f".wh.{leaf}"), io.BytesIO(b""))


def _layer_paths(changes: list[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """``docker diff`` → (paths added or changed, paths deleted), relative, no leading '/'."""
    changed, deleted = set(), []
    for change in changes or []:
        path = change["Path"].lstrip("/")
        if change["Kind"] == 2:
            deleted.append(path)
        else:
            changed.add(path)
    return changed, deleted


def _base_in_registry(client: docker.DockerClient, registry: RegistryClient, base: Any, base_image: str,
                      log_line: Callable[[str], None]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(repository, manifest, config) of ``base`` in the platform's registry: a manifest
    whose config is this very image (its ID is its config's digest). A base that is not
    there (a locally built one) is pushed once, by Docker, under ``remotegpu/bases``."""
    for _attempt in (1, 2):
        for repo_digest in base.attrs.get("RepoDigests") or []:
            name, _, digest = repo_digest.partition("@")
            if not name.startswith(registry.host + "/"):
                continue
            repo = name[len(registry.host) + 1:]
            found = registry.manifest(repo, digest)
            if found is None:
                continue
            manifest, _digest = found
            if (manifest.get("config") or {}).get("digest") == base.id and \
                    len(manifest.get("layers") or []) == len((base.attrs.get("RootFS") or {}).get("Layers") or []):
                return repo, manifest, json.loads(registry.blob(repo, base.id))
        if _attempt == 2:
            break
        repo = f"{registry.host}/remotegpu/bases/{base.id.split(':')[-1][:12]}"
        log_line(f"{base_image} is not in the registry: pushing it once as {repo}:base")
        base.tag(repo, "base")
        push(client, f"{repo}:base", registry.auth, log_line, lambda: False)
        base.reload()
    raise _CannotLayer(f"{base_image} is not in the registry")


def save_container(client: docker.DockerClient, container: Any, base_image: str, target: str, auth: Auth,
                   log_line: Callable[[str], None], cancelled: Callable[[], bool]) -> BuiltImage:
    """Save ``container`` (without data and secrets) as ``target`` in the registry.

    Usually ONE layer of its changes on top of ``base_image``'s own layers (the catalog
    image it was made from): hosts that have the base pull only the changes, and the
    registry stores the base once. Flattened into a single layer instead when the result
    would have more than ``MAX_SAVED_LAYERS`` layers, when the container does not run the
    base image itself (a snapshot made by a recreation carries unfiltered files in its own
    layer), or when the changes cannot stand alone as a layer.

    The layer is never written to disk nor loaded into Docker: the filtered export is
    gzip-ed (stored where it does not compress) and uploaded to the registry as it is
    made (Registry API v2: one streamed blob upload, the base's layers mounted from
    its repository, then the config and a schema 2 manifest). So this host does not keep
    the saved image: an environment started from it here pulls it like any host would,
    which costs only the new layer (the base's are here). That keeps the save's time
    close to the export itself, and the disk free of a copy nobody may use."""
    repo_ref, tag = split_reference(target)
    host, _, repo = repo_ref.partition("/")
    registry = RegistryClient(host, auth)
    try:
        try:
            return _save(client, registry, container, base_image, repo, tag, True, log_line, cancelled)
        except _CannotLayer as why:
            log_line(f"flattening into one layer ({why})")
        return _save(client, registry, container, base_image, repo, tag, False, log_line, cancelled)
    finally:
        registry.close()


def _save(client: docker.DockerClient, registry: RegistryClient, container: Any, base_image: str, repo: str, tag: str,
          layered: bool, log_line: Callable[[str], None], cancelled: Callable[[], bool]) -> BuiltImage:
    from datetime import datetime, timezone

    started = time.monotonic()
    try:
        base = client.images.get(base_image)
    except ImageNotFound:
        if layered:
            raise _CannotLayer("the base image is not on this host") from None
        base = None
    base_cfg: dict[str, Any] = {}
    base_layers: list[dict[str, Any]] = []
    manifest_type, layer_type, config_type = MT_DOCKER_MANIFEST, MT_DOCKER_LAYER, MT_DOCKER_CONFIG
    changed: set[str] | None = None
    deleted: list[str] = []
    base_index: dict[str, _Entry] | None = None
    if layered:
        assert base is not None
        if container.attrs.get("Image") != base.id:
            raise _CannotLayer("the environment runs a snapshot, not its image")
        count = len((base.attrs.get("RootFS") or {}).get("Layers") or [])
        limit = int(os.environ.get("REMOTEGPU_IMAGE_MAX_LAYERS", MAX_SAVED_LAYERS))  # the agent's environment
        if not count or count + 1 > limit:
            raise _CannotLayer(f"{count} layers already")
        source, base_manifest, base_cfg = _base_in_registry(client, registry, base, base_image, log_line)
        if base_manifest.get("mediaType") == MT_OCI_MANIFEST:
            manifest_type, layer_type, config_type = MT_OCI_MANIFEST, MT_OCI_LAYER, MT_OCI_CONFIG
        base_layers = list(base_manifest["layers"])
        for layer in base_layers:
            if not registry.mount(repo, layer["digest"], source):
                raise JobFailed(f"registry: could not mount {layer['digest']} from {source}")
        base_index = _INDEXES.get(base.id)
        if base_index is None:
            changed, deleted = _layer_paths(client.api.diff(container.id))
    else:
        log_line("exporting the environment's system disk (without /root/workspace, mounts, history, keys, tokens)")

    pipe = _LayerPipe(int(os.environ.get("REMOTEGPU_IMAGE_GZIP_LEVEL", "1")), cancelled)
    layer, errors = _Layer(), []

    def produce() -> None:
        try:
            sink = tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=_CHUNK)
            _write_layer(container, sink, cancelled, layer, changed=changed, deleted=deleted, base_index=base_index)
            sink.close()
            pipe.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            errors.append(exc)
            pipe.finish(exc)

    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(5.0):
            log_line(f"saving: {layer.bytes / 1e6:.0f} MB of files, {pipe.blob_bytes / 1e6:.0f} MB uploaded")

    producer = threading.Thread(target=produce, name="rgpu-save-layer", daemon=True)
    producer.start()
    threading.Thread(target=ticker, daemon=True).start()
    try:
        registry.upload(repo, pipe.chunks(), lambda: "sha256:" + pipe.blob.hexdigest())
    except BaseException:
        pipe.drain()
        producer.join()
        if errors:
            raise errors[0] from None
        raise
    finally:
        stop.set()
    producer.join()
    if errors:
        raise errors[0]
    if cancelled():
        raise JobCancelled()
    diff_id, blob_digest = "sha256:" + pipe.diff.hexdigest(), "sha256:" + pipe.blob.hexdigest()
    if layered:
        log_line(f"{layer.kept} paths added or changed, {layer.deleted} deleted since the image")
    log_line(f"one layer: {layer.bytes / 1e6:.0f} MB of files, {pipe.blob_bytes / 1e6:.0f} MB uploaded "
             f"in {time.monotonic() - started:.1f} s")

    attrs = base.attrs if base is not None else {}
    config = dict(attrs.get("Config") or {})
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith("remotegpu.") or k == "remotegpu.image"}
    labels["remotegpu.saved"] = "true"
    config["Labels"] = labels
    config.pop("Image", None)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry = {"created": now, "created_by": "remotegpu: saved from an environment (data and secrets left out)"}
    image_config = {
        "architecture": base_cfg.get("architecture") or attrs.get("Architecture", "amd64"),
        "os": base_cfg.get("os") or attrs.get("Os", "linux"), "created": now, "config": config,
        "history": [*(base_cfg.get("history") or []), entry] if layered else [entry],
        "rootfs": {"type": "layers", "diff_ids": [*((base_cfg.get("rootfs") or {}).get("diff_ids") or []), diff_id]},
    }
    config_bytes = json.dumps(image_config, separators=(",", ":")).encode()
    config_digest = registry.put_blob(repo, config_bytes)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": {"mediaType": config_type, "size": len(config_bytes), "digest": config_digest},
        "layers": [*base_layers, {"mediaType": layer_type, "size": pipe.blob_bytes, "digest": blob_digest}],
    }, separators=(",", ":")).encode()
    digest = registry.put_manifest(repo, tag, manifest, manifest_type)
    _remember(config_digest, layer.index)
    layers = len(base_layers) + 1
    size = (int(attrs.get("Size", 0)) if layered else 0) + pipe.tar_bytes
    log_line(f"pushed {registry.host}/{repo}:{tag} ({digest}): {layers} layer(s), "
             f"{time.monotonic() - started:.1f} s in all")
    return BuiltImage(f"{registry.host}/{repo}:{tag}", digest, size, layers)



def build(client: docker.DockerClient, dockerfile: str, context_b64: str, target: str, base: str, auth: Auth,
          cpu_cores: int, memory_gib: int, timeout_seconds: int, log_line: Callable[[str], None],
          cancelled: Callable[[], bool]) -> BuiltImage:
    """Build ``dockerfile`` (its FROM images are catalog images: pulled from the registry
    first when missing, never from Docker Hub: ``pull=False``), then push ``target``."""
    if base and not has_image(client, base):
        log_line(f"pulling the base image {base}")
        pull(client, base, auth, log_line)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        if context_b64:
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(context_b64)), mode="r:*") as given:
                for member in given:
                    if member.name.lstrip("./") == "Dockerfile" or member.issym() or member.islnk() or member.isdev():
                        continue
                    tar.addfile(member, given.extractfile(member) if member.isfile() else None)
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    started = time.monotonic()
    # The classic builder takes memory and a CPU set (no CPU quota): the build's CPUs are
    # the first ``cpu_cores`` of the host's.
    cpus = max(1, min(cpu_cores, os.cpu_count() or 1))
    limits = {"memory": memory_gib * 1024 ** 3, "memswap": memory_gib * 1024 ** 3, "cpusetcpus": f"0-{cpus - 1}"}
    stream = client.api.build(fileobj=context, custom_context=True, tag=target, rm=True, forcerm=True, pull=False,
                              decode=True, container_limits=limits, timeout=timeout_seconds, labels={"remotegpu.built": "true"})
    try:
        for event in stream:
            if cancelled():
                raise JobCancelled()
            if time.monotonic() - started > timeout_seconds:
                raise JobFailed(f"the build ran past its time limit ({timeout_seconds} s)")
            if "stream" in event:
                log_line(event["stream"].rstrip("\n"))
            if "error" in event:
                raise JobFailed(f"build failed: {str(event['error'])[:1000]}")
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a cancelled build's connection goes: the engine stops it
    image = client.images.get(target)
    digest = push(client, target, auth, log_line, cancelled)
    log_line(f"pushed {target} ({digest})")
    return BuiltImage(target, digest, int(image.attrs.get("Size", 0)), len((image.attrs.get("RootFS") or {}).get("Layers") or []))


def remove_local(client: docker.DockerClient, reference: str) -> None:
    try:
        client.images.remove(reference)
    except (NotFound, DockerException):
        pass
