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


def auth_config(auth: Auth) -> dict[str, str] | None:
    return None if auth is None else {"username": auth[1], "password": auth[2], "serveraddress": auth[0]}


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


def filtered_export(container: Any, cancelled: Callable[[], bool], counter: list[int]) -> Iterator[bytes]:
    """The container's filesystem as a tar stream without what a saved image must not
    carry (see the module docstring); chunks of about 1 MiB."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=_CHUNK) as out:
                source = tarfile.open(fileobj=io.BufferedReader(_IterReader(container.export(chunk_size=_CHUNK)), _CHUNK),
                                      mode="r|")
                sink = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
                dropped: set[str] = set()
                for member in source:
                    if cancelled():
                        raise JobCancelled()
                    name = member.name
                    if excluded_from_save(name) or (member.islnk() and member.linkname.lstrip("/") in dropped):
                        dropped.add(name.lstrip("/"))
                        continue
                    if member.isfile() and name.lstrip("./").lstrip("/") in SAVE_EMPTIED:
                        member.size = 0
                        sink.addfile(member, io.BytesIO(b""))
                        continue
                    sink.addfile(member, source.extractfile(member) if member.isfile() else None)
                    counter[0] += member.size if member.isfile() else 0
                sink.close()
                source.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            errors.append(exc)

    thread = threading.Thread(target=produce, name="rgpu-save-export", daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        while True:
            chunk = reader.read(_CHUNK)
            if not chunk:
                break
            yield chunk
    thread.join()
    if errors:
        raise errors[0]


def dockerfile_config(config: dict[str, Any], labels: dict[str, str]) -> list[str]:
    from remotegpu.adapters.runtime.docker_runtime import _dockerfile_config

    return _dockerfile_config(config, labels)


#: A saved image has at most this many layers: its base's plus one per save. Past it the
#: save flattens everything into one layer (overlay2 stacks at most ~125).
MAX_SAVED_LAYERS = 16


class _CannotLayer(Exception):
    """The changes cannot be one layer on the base (flatten instead)."""


def save_container(client: docker.DockerClient, container: Any, base_image: str, target: str, auth: Auth,
                   log_line: Callable[[str], None], cancelled: Callable[[], bool]) -> BuiltImage:
    """Save ``container`` (without data and secrets) as ``target`` and push it.

    Usually ONE layer of its changes on top of ``base_image``'s own layers (the catalog
    image it was made from): hosts that have the base pull only the changes, and the
    registry stores the base once. Flattened into a single layer instead when the result
    would have more than ``MAX_SAVED_LAYERS`` layers, when the container does not run the
    base image itself (a snapshot made by a recreation carries unfiltered files in its own
    layer), or when the changes cannot stand alone as a layer."""
    try:
        return _save_layered(client, container, base_image, target, auth, log_line, cancelled)
    except _CannotLayer as why:
        log_line(f"flattening into one layer ({why})")
    return _save_flat(client, container, base_image, target, auth, log_line, cancelled)


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


def _save_layered(client: docker.DockerClient, container: Any, base_image: str, target: str, auth: Auth,
                  log_line: Callable[[str], None], cancelled: Callable[[], bool]) -> BuiltImage:
    import hashlib
    import tempfile
    from datetime import datetime, timezone

    try:
        base = client.images.get(base_image)
    except ImageNotFound:
        raise _CannotLayer("the base image is not on this host") from None
    if container.attrs.get("Image") != base.id:
        raise _CannotLayer("the environment runs a snapshot, not its image")
    base_layers = list((base.attrs.get("RootFS") or {}).get("Layers") or [])
    limit = int(os.environ.get("REMOTEGPU_IMAGE_MAX_LAYERS", MAX_SAVED_LAYERS))  # the agent's environment
    if not base_layers or len(base_layers) + 1 > limit:
        raise _CannotLayer(f"{len(base_layers)} layers already")
    changed, deleted = _layer_paths(client.api.diff(container.id))
    log_line(f"{len(changed)} paths added or changed, {len(deleted)} deleted since the image")
    started = time.monotonic()
    kept: set[str] = set()
    with tempfile.TemporaryFile(prefix="rgpu-save-") as layer:
        digest = hashlib.sha256()

        class _Hashing(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                digest.update(b)
                return layer.write(b)

        sink = tarfile.open(fileobj=_Hashing(), mode="w|", format=tarfile.PAX_FORMAT)
        source = tarfile.open(fileobj=io.BufferedReader(_IterReader(container.export(chunk_size=_CHUNK)), _CHUNK), mode="r|")
        written = 0
        for member in source:
            if cancelled():
                raise JobCancelled()
            name = member.name[2:] if member.name.startswith("./") else member.name.lstrip("/")
            if name.rstrip("/") not in changed or excluded_from_save(name):
                continue
            if member.islnk() and member.linkname.lstrip("/") not in kept:
                raise _CannotLayer(f"a hard link to an unchanged file ({name})")
            kept.add(name)
            if member.isfile() and name in SAVE_EMPTIED:
                member.size = 0
                sink.addfile(member, io.BytesIO(b""))
                continue
            sink.addfile(member, source.extractfile(member) if member.isfile() else None)
            written += member.size if member.isfile() else 0
        source.close()
        for path in deleted:
            if excluded_from_save(path):
                continue
            parent, _, leaf = path.rpartition("/")
            whiteout = tarfile.TarInfo(f"{parent}/.wh.{leaf}" if parent else f".wh.{leaf}")
            sink.addfile(whiteout, io.BytesIO(b""))
        sink.close()
        diff_id = "sha256:" + digest.hexdigest()
        size = layer.tell()
        log_line(f"changes: {written / 1e6:.0f} MB in one layer ({time.monotonic() - started:.1f} s)")
        config = dict(base.attrs.get("Config") or {})
        labels = {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith("remotegpu.") or k == "remotegpu.image"}
        labels["remotegpu.saved"] = "true"
        config["Labels"] = labels
        config.pop("Image", None)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        history = [{"created": base.attrs.get("Created", now), "created_by": f"layer {i} of {base_image}"}
                   for i in range(len(base_layers))]
        history.append({"created": now, "created_by": "remotegpu: saved from an environment (data and secrets left out)"})
        image_config = json.dumps({
            "architecture": base.attrs.get("Architecture", "amd64"), "os": base.attrs.get("Os", "linux"),
            "created": now, "config": config, "history": history,
            "rootfs": {"type": "layers", "diff_ids": base_layers + [diff_id]},
        }).encode()
        config_name = hashlib.sha256(image_config).hexdigest() + ".json"
        manifest = json.dumps([{
            "Config": config_name, "RepoTags": [target],
            # Only the new layer is in the archive: Docker loads the others from its own
            # store (they are the base's, present here).
            "Layers": [f"base{i}/layer.tar" for i in range(len(base_layers))] + ["new/layer.tar"],
        }]).encode()
        layer.seek(0)
        read_fd, write_fd = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_fd, "wb", buffering=_CHUNK) as out, tarfile.open(fileobj=out, mode="w|") as tar:
                    for name, data in (("manifest.json", manifest), (config_name, image_config)):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    info = tarfile.TarInfo("new/layer.tar")
                    info.size = size
                    tar.addfile(info, layer)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        def chunks() -> Iterator[bytes]:
            with os.fdopen(read_fd, "rb", buffering=0) as reader:
                while chunk := reader.read(_CHUNK):
                    yield chunk

        thread = threading.Thread(target=produce, name="rgpu-save-load", daemon=True)
        thread.start()
        try:
            for event in client.api.load_image(chunks()) or []:
                if isinstance(event, dict) and "error" in event:
                    raise JobFailed(f"load failed: {str(event['error'])[:500]}")
        finally:
            thread.join()
        if errors:
            raise errors[0]
    image = client.images.get(target)
    layers = len((image.attrs.get("RootFS") or {}).get("Layers") or [])
    log_line(f"image: {layers} layers ({len(base_layers)} of {base_image} + the changes), "
             f"{image.attrs.get('Size', 0) / 1e6:.0f} MB in {time.monotonic() - started:.1f} s")
    digest_pushed = push(client, target, auth, log_line, cancelled)
    log_line(f"pushed {target} ({digest_pushed})")
    return BuiltImage(target, digest_pushed, int(image.attrs.get("Size", 0)), layers)


def _save_flat(client: docker.DockerClient, container: Any, base_image: str, target: str, auth: Auth,
               log_line: Callable[[str], None], cancelled: Callable[[], bool]) -> BuiltImage:
    """Flatten ``container`` (without data and secrets) into one layer as ``target`` and push it."""
    try:
        config = client.images.get(base_image).attrs.get("Config") or {}
    except ImageNotFound:
        config = {}
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith("remotegpu.") or k == "remotegpu.image"}
    labels["remotegpu.saved"] = "true"
    repo, tag = split_reference(target)
    counter = [0]
    started = time.monotonic()
    log_line(f"exporting the environment's system disk (without /root/workspace, mounts, history, keys, tokens)")
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(5.0):
            log_line(f"exported {counter[0] / 1e6:.0f} MB")

    tick = threading.Thread(target=ticker, daemon=True)
    tick.start()
    try:
        result = client.api.import_image(
            src=filtered_export(container, cancelled, counter), repository=repo, tag=tag,
            changes=dockerfile_config(config, labels), stream_src=True,
        )
    finally:
        stop.set()
    if cancelled():
        raise JobCancelled()
    text = result if isinstance(result, str) else json.dumps(result)
    if "error" in text.lower() and '"status"' not in text:
        raise JobFailed(f"import failed: {text[:500]}")
    image = client.images.get(target)
    log_line(f"flattened into one layer: {image.attrs.get('Size', 0) / 1e6:.0f} MB in {time.monotonic() - started:.1f} s")
    digest = push(client, target, auth, log_line, cancelled)
    log_line(f"pushed {target} ({digest})")
    layers = len((image.attrs.get("RootFS") or {}).get("Layers") or [])
    return BuiltImage(target, digest, int(image.attrs.get("Size", 0)), layers)


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
