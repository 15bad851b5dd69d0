"""What the storage context needs from the outside: an object store and a catalog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import AsyncIterator, Protocol

from remotegpu.domain.storage.models import Blob, Repository, SharedDisk, Upload, Version


class ObjectNotFound(Exception):
    """The key does not exist in the object store."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class PartInfo:
    number: int
    etag: str
    size: int


class ObjectStore(Protocol):
    """A flat key → bytes store. Data flows as async iterators of chunks, never as one
    object in memory. Multipart uploads survive a dropped part: ``list_parts`` says what
    arrived, the client sends the rest. Stores that can sign URLs (S3) hand them out
    (``presign_*`` answers None where not: the platform then proxies the bytes)."""

    #: True when ``presign_get`` / ``presign_part`` answer URLs clients can use directly.
    presigns: bool

    async def ensure_ready(self) -> None:
        """Create the bucket / root directory when missing."""
        ...

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, part_size: int = 16 * 1024 * 1024) -> int:
        """Write an object from a stream of unknown length (at most one part in memory); returns its size."""
        ...

    async def get(self, key: str, *, offset: int = 0, length: int | None = None,
                  chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """The object's bytes (or the range ``offset``..``offset+length``), in chunks. ObjectNotFound."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is fine."""
        ...

    async def copy(self, source: str, target: str) -> None:
        """Server-side copy (any size)."""
        ...

    async def create_multipart(self, key: str) -> str:
        """Start a multipart upload; returns its id."""
        ...

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """One part (1-based ``number``; every part but the last ≥ 5 MiB on S3); returns its etag."""
        ...

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """The parts received so far, by number."""
        ...

    async def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> None: ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Idempotent."""
        ...

    async def presign_get(self, key: str, expires: timedelta, *, filename: str | None = None) -> str | None: ...

    async def presign_part(self, key: str, upload_id: str, number: int, expires: timedelta) -> str | None: ...

    async def presign_put(self, key: str, expires: timedelta) -> str | None: ...


class StorageCatalog(Protocol):
    """Datasets/models, versions, blobs and uploads. Each call is one short transaction."""

    async def add_repository(self, repo: Repository) -> None:
        """Conflict when the workspace already has one of that kind and name."""
        ...

    async def get_repository(self, repo_id: str) -> Repository | None: ...

    async def find_repository(self, workspace_id: str, kind: str, name: str) -> Repository | None: ...

    async def list_repositories(self, kind: str, workspace_id: str | None, *, public: bool) -> list[Repository]:
        """With a workspace: its own, plus every public one when ``public``. Without: the
        public ones when ``public``, else every one (platform admins)."""
        ...

    async def update_repository(self, repo: Repository) -> None: ...

    async def delete_repository(self, repo_id: str) -> None:
        """With its versions, tags and uploads."""
        ...

    async def add_version(self, version: Version) -> None:
        """Conflict when the repository has a version of that number already."""
        ...

    async def get_version(self, repo_id: str, number: int) -> Version | None: ...

    async def list_versions(self, repo_id: str) -> list[Version]:
        """Oldest first."""
        ...

    async def delete_version(self, repo_id: str, number: int) -> None:
        """With the tags that point at it."""
        ...

    async def add_blobs(self, blobs: list[Blob], *, verifies: str) -> set[str]:
        """``add_blob(…, verifies=…)`` for many blobs, in one transaction where the catalog
        has them; returns the digests that were new."""
        ...

    async def add_blob(self, blob: Blob, *, verifies: str | None = None) -> bool:
        """Record a verified blob; False when it was already known (another upload was first).
        ``verifies``: an upload id whose pending blob is marked verified with it (one
        transaction where the catalog has them; as ``mark_verified`` at ``blob.created_at``)."""
        ...

    async def get_blobs(self, digests: list[str]) -> dict[str, Blob]: ...

    async def unreferenced_blobs(self, older_than: datetime) -> list[Blob]:
        """Blobs no version's manifest and no open upload references, created before ``older_than``."""
        ...

    async def delete_blob(self, digest: str, older_than: datetime) -> bool:
        """Forget the blob only if it is still unreferenced and older than ``older_than``
        (checked in the same transaction); True when it was forgotten."""
        ...

    async def workspace_bytes(self, workspace_id: str) -> int:
        """Bytes of the distinct blobs the workspace's versions reference (each counted once)."""
        ...

    async def repository_bytes(self, repo_id: str) -> int:
        """Bytes of the distinct blobs its versions reference."""
        ...

    async def add_upload(self, upload: Upload) -> None: ...

    async def get_upload(self, upload_id: str, *, blob: str | None = None) -> Upload | None:
        """``blob``: one blob's view (``files`` empty, ``pending`` only that blob, if the
        upload brings it): what a part or a complete call needs, without decoding a manifest
        of thousands of files per request. Never pass such a view to update_upload."""
        ...

    async def update_upload(self, upload: Upload) -> None: ...

    async def delete_upload(self, upload_id: str) -> None: ...

    async def record_part(self, upload_id: str, sha256: str, number: int, etag: str, size: int, now: datetime) -> None:
        """Record one received part (replacing an earlier one of that number); atomic per part,
        so that parts sent in parallel never lose each other. get_upload shows them in ``pending``."""
        ...

    async def mark_verified(self, upload_id: str, sha256: str, now: datetime) -> None: ...

    async def reset_parts(self, upload_id: str, sha256: str) -> None:
        """Forget the parts received of one blob (its bytes did not verify)."""
        ...

    async def stale_uploads(self, before: datetime) -> list[Upload]:
        """Open uploads last touched before ``before``."""
        ...

    async def get_shared_disk(self, workspace_id: str) -> SharedDisk | None: ...

    async def put_shared_disk(self, disk: SharedDisk) -> None:
        """Create or resize."""
        ...

    async def delete_shared_disk(self, workspace_id: str) -> None: ...


class Unsupported(Exception):
    """The object store cannot do this (e.g. s3rver has no ListParts)."""
