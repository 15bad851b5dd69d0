"""Datasets and models ("repositories"), their immutable versions and content-addressed blobs.

A version is a manifest: files (path, size, sha256). Bytes live once per sha256 as a
blob, whichever version (or repository) refers to it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from remotegpu.domain.shared.errors import InvalidInput

MiB = 1024 * 1024
#: Multipart parts: every part but the last is this big, and within these bounds.
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MAX_FILES_PER_VERSION = 10_000
MAX_FILE_SIZE = 5 * 1024 * 1024 * MiB  # 5 TiB, S3's object limit
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_TAG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LATEST = "latest"


class Kind(str, Enum):
    DATASET = "dataset"
    MODEL = "model"


class DataVisibility(str, Enum):
    PRIVATE = "private"  # the workspace's members
    PUBLIC = "public"  # every user of the platform (set by platform admins)


# Named apart from the images' visibility: OpenAPI components are keyed by class name.
Visibility = DataVisibility


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass
class ModelInfo:
    framework: str = ""
    format: str = ""
    task: str = ""
    base_model: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Repository:
    id: str
    workspace_id: str
    kind: Kind
    name: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    visibility: Visibility = Visibility.PRIVATE
    tags: dict[str, int] = field(default_factory=dict)  # name → version number ("latest" is implicit)
    model: ModelInfo | None = None  # models only


class SourceKind(str, Enum):
    ENVIRONMENT = "environment"
    JOB = "job"


@dataclass(frozen=True)
class Provenance:
    """What made a version: an environment or a training job (by id)."""

    kind: SourceKind
    id: str


@dataclass
class Version:
    repository_id: str
    number: int
    files: list[FileEntry]
    created_by: str
    created_at: datetime
    message: str = ""
    source: Provenance | None = None  # None: a person uploaded it

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    created_at: datetime
    #: The object holding the bytes; None: the classic ``blob_key(sha256)``. An upload
    #: assembles a blob at a key of its own and keeps it there once verified (no copy).
    key: str | None = None

    @property
    def object_key(self) -> str:
        return self.key or blob_key(self.sha256)


#: Where a workspace's shared disk appears in each of its environments.
SHARED_DISK_PATH = "/root/shared"
MAX_SHARED_DISK_GIB = 100_000


@dataclass
class SharedDisk:
    """A workspace's shared disk (like AutoDL's 文件存储): one read-write volume per host,
    mounted at /root/shared in every environment of the workspace on that host. It does
    not follow an environment to another host: each host has its own."""

    workspace_id: str
    size_gib: int
    created_at: datetime
    updated_at: datetime


class UploadState(str, Enum):
    OPEN = "open"
    COMMITTED = "committed"


@dataclass
class PendingBlob:
    """A blob the upload still has to bring: parts go to ``staging_key`` (a multipart upload
    of the object store; a blob of one part has no ``multipart_id`` and is PUT whole);
    verified once its sha256 was recomputed from the stored bytes (or from the bytes
    themselves, when a whole file came through the platform)."""

    sha256: str
    size: int
    staging_key: str
    multipart_id: str
    verified: bool = False
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)  # number → (etag, size), as received


@dataclass
class Upload:
    id: str
    repository_id: str
    workspace_id: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    files: list[FileEntry]
    part_size: int
    pending: dict[str, PendingBlob]  # sha256 → what is still to come
    message: str = ""
    tag: str | None = None
    state: UploadState = UploadState.OPEN
    source: Provenance | None = None  # given to the version at commit

    @property
    def complete(self) -> bool:
        return all(p.verified for p in self.pending.values())


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput("name: 1-64 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
                           details={"field": "name"})
    return name


def check_tag(tag: str) -> str:
    if not _TAG.match(tag) or tag == LATEST or tag.isdigit():
        raise InvalidInput("tag: 1-64 letters, digits, '.', '_' or '-'; not 'latest' and not a number", details={"field": "tag"})
    return tag


def check_path(path: str) -> str:
    """A relative POSIX path inside the version: no '..', no leading '/', no empty parts."""
    if not path or len(path) > 1024 or "\x00" in path or "\\" in path:
        raise InvalidInput(f"file path {path!r} is not allowed", details={"field": "files"})
    normal = posixpath.normpath(path)
    if normal != path or path.startswith("/") or normal == "." or normal.split("/")[0] == "..":
        raise InvalidInput(f"file path {path!r} must be relative and normalized (no '..', '.', '//')", details={"field": "files"})
    return path


def check_manifest(files: list[FileEntry]) -> list[FileEntry]:
    if not files:
        raise InvalidInput("a version holds at least one file", details={"field": "files"})
    if len(files) > MAX_FILES_PER_VERSION:
        raise InvalidInput(f"a version holds at most {MAX_FILES_PER_VERSION} files", details={"field": "files"})
    seen: set[str] = set()
    prefixes: set[str] = set()
    for f in files:
        check_path(f.path)
        if not _SHA256.match(f.sha256):
            raise InvalidInput(f"{f.path}: sha256 must be 64 lowercase hex digits", details={"field": "files"})
        if not 0 <= f.size <= MAX_FILE_SIZE:
            raise InvalidInput(f"{f.path}: size out of range", details={"field": "files"})
        if f.path in seen:
            raise InvalidInput(f"{f.path}: listed twice", details={"field": "files"})
        seen.add(f.path)
        parts = f.path.split("/")
        prefixes.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = seen & prefixes
    if clash:
        raise InvalidInput(f"{sorted(clash)[0]}: both a file and a directory", details={"field": "files"})
    return sorted(files, key=lambda f: f.path)


def check_part_size(part_size: int) -> int:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise InvalidInput(f"part_size: between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes", details={"field": "part_size"})
    return part_size


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def upload_blob_key(sha256: str, upload_id: str) -> str:
    """Where an upload assembles a blob: beside the classic key, unique per upload (two
    uploads of the same bytes never write one object; the first verified one is kept)."""
    return f"{blob_key(sha256)}.{upload_id}"


def digest_of_key(key: str) -> str:
    """The sha256 an object under blobs/ holds (either key form)."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


@dataclass(frozen=True)
class Diff:
    added: list[FileEntry]
    removed: list[FileEntry]
    changed: list[tuple[FileEntry, FileEntry]]  # (before, after)
    unchanged: int


def diff(before: list[FileEntry], after: list[FileEntry]) -> Diff:
    old = {f.path: f for f in before}
    new = {f.path: f for f in after}
    added = [new[p] for p in sorted(new.keys() - old.keys())]
    removed = [old[p] for p in sorted(old.keys() - new.keys())]
    changed = [(old[p], new[p]) for p in sorted(old.keys() & new.keys()) if old[p].sha256 != new[p].sha256]
    return Diff(added, removed, changed, len(old.keys() & new.keys()) - len(changed))
