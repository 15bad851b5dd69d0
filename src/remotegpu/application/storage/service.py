"""Datasets and models: repositories, immutable versions, uploads, downloads, garbage collection.

Authorization as everywhere: another tenant's dataset answers 404 (public ones excepted,
which every user reads); viewers read, members write; only platform admins make one public.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tarfile
from dataclasses import dataclass, field
from datetime import timedelta
from typing import AsyncIterator

from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.storage.env_tokens import current_scope
from remotegpu.application.storage.ports import ObjectNotFound, ObjectStore, PartInfo, StorageCatalog
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.storage import models as m
from remotegpu.domain.storage.models import (
    Blob, Diff, FileEntry, Kind, ModelInfo, PendingBlob, Provenance, Repository, SharedDisk, SourceKind, Upload, UploadState,
    Version, Visibility,
)
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)
GiB = 1024**3
MAX_DESCRIPTION = 2000
#: Verification reads the assembled blob back in chunks this big, hashing one in a worker
#: thread while the next arrives.
VERIFY_CHUNK = 8 * 1024 * 1024


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def sha256_of(chunks: AsyncIterator[bytes]) -> tuple[str, int]:
    """sha256 and size of a stream, hashed off the event loop (hashlib releases the GIL on
    large buffers), overlapping the hashing of one chunk with the reading of the next."""
    digest, size = hashlib.sha256(), 0
    hashing: asyncio.Future | None = None
    try:
        async for chunk in chunks:
            if hashing is not None:
                await hashing
            size += len(chunk)
            hashing = asyncio.ensure_future(asyncio.to_thread(digest.update, chunk))
        if hashing is not None:
            await hashing
    finally:
        if hashing is not None and not hashing.done():
            hashing.cancel()
    return digest.hexdigest(), size


@dataclass(frozen=True)
class GcReport:
    blobs_removed: int
    bytes_freed: int
    uploads_cleaned: int


@dataclass
class StorageService:
    uow: UnitOfWorkFactory  # workspace membership and quota
    catalog: StorageCatalog
    store: ObjectStore
    clock: Clock
    policy: WorkspacePolicy = field(default_factory=WorkspacePolicy)
    #: An upload untouched this long is abandoned (cleaned); a blob younger than this is never collected.
    grace: timedelta = timedelta(days=1)
    presign_ttl: timedelta = timedelta(hours=1)
    _ready: bool = field(default=False, init=False, repr=False)

    async def _ensure_store(self) -> None:
        """The bucket (or directory) exists: checked once per process, at the first upload."""
        if not self._ready:
            await self.store.ensure_ready()
            self._ready = True

    # --- authorization ----------------------------------------------------------------

    @staticmethod
    def _scoped(workspace_id: str | None, label: str = "workspace") -> None:
        """A request by an environment's token (env_tokens.py) reaches its own workspace only."""
        scope = current_scope.get()
        if scope is not None and workspace_id != scope.workspace_id:
            raise NotFound(f"{label} not found")

    @staticmethod
    def _no_public_by_environment(visibility: Visibility | None) -> None:
        if visibility is Visibility.PUBLIC and current_scope.get() is not None:
            raise PermissionDenied("an environment's token cannot make a dataset or model public", code="admin_required")

    async def _repo(self, actor: User, repo_id: str, needed: Role, kind: Kind | None = None) -> Repository:
        repo = await self.catalog.get_repository(repo_id)
        label = (kind or (repo.kind if repo else Kind.DATASET)).value
        if repo is None or (kind is not None and repo.kind is not kind):
            raise NotFound(f"{label} not found")
        if needed is Role.VIEWER and repo.visibility is Visibility.PUBLIC:
            return repo
        self._scoped(repo.workspace_id, label)
        try:
            async with self.uow() as uow:
                await authorize(uow, actor, repo.workspace_id, needed)
        except NotFound:
            raise NotFound(f"{label} not found") from None
        return repo

    # --- repositories -----------------------------------------------------------------

    async def create(self, actor: User, kind: Kind, workspace_id: str, name: str, *, description: str = "",
                     visibility: Visibility = Visibility.PRIVATE, model: ModelInfo | None = None) -> Repository:
        self._scoped(workspace_id)
        self._no_public_by_environment(visibility)
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.MEMBER)
        if visibility is Visibility.PUBLIC and not actor.is_admin:
            raise PermissionDenied("only platform administrators make a dataset or model public", code="admin_required")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters", details={"field": "description"})
        now = self.clock.now()
        repo = Repository(id=new_id(), workspace_id=workspace_id, kind=kind, name=m.check_name(name), created_by=actor.id,
                          created_at=now, updated_at=now, description=description, visibility=visibility,
                          model=(model or ModelInfo()) if kind is Kind.MODEL else None)
        await self.catalog.add_repository(repo)
        return repo

    async def list(self, actor: User, kind: Kind, workspace_id: str | None, *, public: bool = True) -> list[Repository]:
        """A workspace's (with the public shelf when ``public``); without a workspace: the public shelf."""
        if workspace_id is not None:
            self._scoped(workspace_id)
            async with self.uow() as uow:
                await authorize(uow, actor, workspace_id, Role.VIEWER)
        return await self.catalog.list_repositories(kind.value, workspace_id, public=public or workspace_id is None)

    async def get(self, actor: User, kind: Kind, repo_id: str) -> Repository:
        return await self._repo(actor, repo_id, Role.VIEWER, kind)

    async def update(self, actor: User, kind: Kind, repo_id: str, *, description: str | None = None,
                     visibility: Visibility | None = None, model: ModelInfo | None = None) -> Repository:
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        self._no_public_by_environment(visibility)
        if visibility is not None and visibility is not repo.visibility:
            if not actor.is_admin:
                raise PermissionDenied("only platform administrators change visibility", code="admin_required")
            repo.visibility = visibility
        if description is not None:
            if len(description) > MAX_DESCRIPTION:
                raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters", details={"field": "description"})
            repo.description = description
        if model is not None:
            if kind is not Kind.MODEL:
                raise InvalidInput("only models carry model metadata", details={"field": "model"})
            repo.model = model
        repo.updated_at = self.clock.now()
        await self.catalog.update_repository(repo)
        return repo

    async def delete(self, actor: User, kind: Kind, repo_id: str) -> None:
        """With its versions; blobs no other version references go at the next collection."""
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        for upload in await self._open_uploads(repo.id):
            await self._drop_upload(upload)
        await self.catalog.delete_repository(repo.id)

    async def usage(self, actor: User, kind: Kind, repo_id: str) -> int:
        repo = await self._repo(actor, repo_id, Role.VIEWER, kind)
        return await self.catalog.repository_bytes(repo.id)

    # --- versions and tags ------------------------------------------------------------

    async def versions(self, actor: User, kind: Kind, repo_id: str) -> list[Version]:
        repo = await self._repo(actor, repo_id, Role.VIEWER, kind)
        return await self.catalog.list_versions(repo.id)

    async def _resolve(self, repo: Repository, ref: str) -> Version:
        if ref == m.LATEST:
            versions = await self.catalog.list_versions(repo.id)
            if not versions:
                raise NotFound(f"{repo.kind.value} {repo.name} has no version yet")
            return versions[-1]
        number = int(ref) if ref.isdigit() else repo.tags.get(ref)
        version = await self.catalog.get_version(repo.id, number) if number is not None else None
        if version is None:
            raise NotFound(f"version {ref!r} not found")
        return version

    async def version(self, actor: User, kind: Kind, repo_id: str, ref: str) -> tuple[Repository, Version]:
        repo = await self._repo(actor, repo_id, Role.VIEWER, kind)
        return repo, await self._resolve(repo, ref)

    async def diff(self, actor: User, kind: Kind, repo_id: str, before: str, after: str) -> tuple[Version, Version, Diff]:
        repo = await self._repo(actor, repo_id, Role.VIEWER, kind)
        a, b = await self._resolve(repo, before), await self._resolve(repo, after)
        return a, b, m.diff(a.files, b.files)

    async def set_tag(self, actor: User, kind: Kind, repo_id: str, tag: str, ref: str) -> Repository:
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        version = await self._resolve(repo, ref)
        repo.tags[m.check_tag(tag)] = version.number
        repo.updated_at = self.clock.now()
        await self.catalog.update_repository(repo)
        return repo

    async def delete_tag(self, actor: User, kind: Kind, repo_id: str, tag: str) -> Repository:
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        if repo.tags.pop(tag, None) is None:
            raise NotFound(f"tag {tag!r} not found")
        await self.catalog.update_repository(repo)
        return repo

    async def delete_version(self, actor: User, kind: Kind, repo_id: str, number: int) -> None:
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        if await self.catalog.get_version(repo.id, number) is None:
            raise NotFound(f"version {number} not found")
        await self.catalog.delete_version(repo.id, number)

    # --- quota --------------------------------------------------------------------------

    async def _check_quota(self, workspace_id: str, files: list[FileEntry]) -> None:
        """Deduplicated bytes (each blob once per workspace) plus environment disks stay within storage_gib."""
        async with self.uow() as uow:
            quota, _ = await self.policy.workspace_quota(uow, workspace_id)
            disks = (await uow.workspaces.usage(workspace_id)).storage_gib
        limit = quota.max_storage_gib
        if limit is None:
            return
        shared = await self.catalog.get_shared_disk(workspace_id)
        disks += shared.size_gib if shared else 0  # the shared disk counts like an environment's disk
        held = await self.catalog.workspace_bytes(workspace_id)
        # Bytes of the workspace's own versions already: those blobs cost nothing more.
        new = {f.sha256: f.size for f in files}
        known = await self._workspace_digests(workspace_id, set(new))
        adding = sum(size for digest, size in new.items() if digest not in known)
        used = disks * GiB + held
        if adding and used + adding > limit * GiB:
            raise QuotaExceeded(
                f"the workspace's storage quota is {limit} GiB; {used / GiB:.2f} GiB are used and this version adds {adding / GiB:.2f} GiB",
                details={"resource": "storage_gib", "limit": limit, "used_bytes": used, "requested_bytes": adding},
            )

    async def _workspace_digests(self, workspace_id: str, digests: set[str]) -> set[str]:
        found: set[str] = set()
        for repo in await self.catalog.list_repositories(Kind.DATASET.value, workspace_id, public=False) + \
                await self.catalog.list_repositories(Kind.MODEL.value, workspace_id, public=False):
            for v in await self.catalog.list_versions(repo.id):
                found |= {f.sha256 for f in v.files if f.sha256 in digests}
        return found

    # --- the workspace's shared disk ----------------------------------------------------

    async def shared_disk(self, actor: User, workspace_id: str) -> SharedDisk | None:
        self._scoped(workspace_id)
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
        return await self.catalog.get_shared_disk(workspace_id)

    async def set_shared_disk(self, actor: User, workspace_id: str, size_gib: int) -> SharedDisk:
        """Turn on (or resize) the workspace's shared disk (workspace admins). Its size counts
        against storage_gib, with environment disks and dataset/model bytes. Environments
        get it at their next start."""
        self._scoped(workspace_id)
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.ADMIN)
            quota, _ = await self.policy.workspace_quota(uow, workspace_id)
            disks = (await uow.workspaces.usage(workspace_id)).storage_gib
        if not 1 <= size_gib <= m.MAX_SHARED_DISK_GIB:
            raise InvalidInput(f"size_gib: 1..{m.MAX_SHARED_DISK_GIB}", details={"field": "size_gib"})
        limit = quota.max_storage_gib
        if limit is not None:
            used = disks * GiB + await self.catalog.workspace_bytes(workspace_id)
            if used + size_gib * GiB > limit * GiB:
                raise QuotaExceeded(
                    f"the workspace's storage quota is {limit} GiB; {used / GiB:.2f} GiB are used by disks and data, "
                    f"a shared disk of {size_gib} GiB does not fit",
                    details={"resource": "storage_gib", "limit": limit, "used_bytes": used, "requested_bytes": size_gib * GiB},
                )
        now = self.clock.now()
        found = await self.catalog.get_shared_disk(workspace_id)
        disk = SharedDisk(workspace_id, size_gib, found.created_at if found else now, now)
        await self.catalog.put_shared_disk(disk)
        return disk

    async def remove_shared_disk(self, actor: User, workspace_id: str) -> None:
        """Environments started from now on no longer get it; the volumes on hosts are kept
        (data is never deleted by a setting): an operator removes them (README)."""
        self._scoped(workspace_id)
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.ADMIN)
        await self.catalog.delete_shared_disk(workspace_id)  # idempotent

    async def workspace_usage(self, actor: User, workspace_id: str) -> int:
        self._scoped(workspace_id)
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.VIEWER)
        return await self.catalog.workspace_bytes(workspace_id)

    # --- uploads ------------------------------------------------------------------------

    async def _check_source(self, workspace_id: str, source: Provenance) -> None:
        """The environment or training job must be one of the workspace's (else: 422, as if unknown)."""
        async with self.uow() as uow:
            if source.kind is SourceKind.ENVIRONMENT:
                found = await uow.environments.get(source.id)
            else:
                found = await uow.training_jobs.get(source.id)
        if found is None or getattr(found, "workspace_id", None) != workspace_id:
            raise InvalidInput(f"source: no {source.kind.value} {source.id!r} in this workspace", code="source_not_found",
                               details={"field": "source"})

    async def start_upload(self, actor: User, kind: Kind, repo_id: str, files: list[FileEntry], *, message: str = "",
                           tag: str | None = None, part_size: int = m.DEFAULT_PART_SIZE,
                           source: Provenance | None = None) -> Upload:
        """Declare the files of the next version. Blobs the platform has already are not sent again.
        ``source``: the environment or training job that made it (recorded on the version)."""
        repo = await self._repo(actor, repo_id, Role.MEMBER, kind)
        scope = current_scope.get()
        if source is None and scope is not None:  # pushed from inside an environment: it made the version
            source = Provenance(SourceKind.ENVIRONMENT, scope.env_id)
        if source is not None:
            await self._check_source(repo.workspace_id, source)
        files = m.check_manifest(files)
        if tag is not None:
            m.check_tag(tag)
        if len(message) > MAX_DESCRIPTION:
            raise InvalidInput(f"message: at most {MAX_DESCRIPTION} characters", details={"field": "message"})
        m.check_part_size(part_size)
        await self._check_quota(repo.workspace_id, files)
        await self._ensure_store()
        sizes = {f.sha256: f.size for f in files}
        known = await self.catalog.get_blobs(list(sizes))
        for digest, blob in known.items():
            if blob.size != sizes[digest]:
                raise InvalidInput(f"sha256 {digest} is known with another size", details={"field": "files"})
        now = self.clock.now()
        upload_id = new_id()
        pending: dict[str, PendingBlob] = {}
        try:
            for digest in sorted(set(sizes) - set(known)):
                key = m.upload_blob_key(digest, upload_id)  # kept there once verified: no copy
                # A file of one part is written whole (a plain PUT, no multipart upload to
                # create, complete or abort: per small file that is 3 object-store calls fewer).
                single = m.part_count(sizes[digest], part_size) <= 1
                pending[digest] = PendingBlob(digest, sizes[digest], key, "" if single else await self.store.create_multipart(key))
        except BaseException:
            for p in pending.values():
                if p.multipart_id:
                    await self.store.abort_multipart(p.staging_key, p.multipart_id)
            raise
        upload = Upload(id=upload_id, repository_id=repo.id, workspace_id=repo.workspace_id, created_by=actor.id, created_at=now,
                        updated_at=now, files=files, part_size=part_size, pending=pending, message=message, tag=tag, source=source)
        await self.catalog.add_upload(upload)
        return upload

    async def _upload(self, actor: User, upload_id: str, *, blob: str | None = None) -> Upload:
        upload = await self.catalog.get_upload(upload_id, blob=blob)
        if upload is None or upload.state is not UploadState.OPEN:
            raise NotFound("upload not found")
        try:
            await self._repo(actor, upload.repository_id, Role.MEMBER)
        except NotFound:
            raise NotFound("upload not found") from None
        return upload

    async def get_upload(self, actor: User, upload_id: str) -> Upload:
        """With the parts received so far (resume: send the others)."""
        return await self._upload(actor, upload_id)

    @staticmethod
    def _pending(upload: Upload, digest: str, *, verified_ok: bool = False) -> PendingBlob:
        blob = upload.pending.get(digest)
        if blob is None:
            raise NotFound(f"the upload does not bring a blob {digest}")
        if blob.verified and not verified_ok:
            raise Conflict("that file is already verified", code="already_verified")
        return blob

    @staticmethod
    def _check_part(upload: Upload, blob: PendingBlob, number: int, size: int | None) -> int:
        count = m.part_count(blob.size, upload.part_size)
        if not 1 <= number <= count:
            raise InvalidInput(f"part number: 1..{count} for this file", details={"field": "number"})
        expected = upload.part_size if number < count else blob.size - upload.part_size * (count - 1)
        if size is not None and size != expected:
            raise InvalidInput(f"part {number} holds {expected} bytes, not {size}", code="wrong_part_size",
                               details={"expected": expected})
        return expected

    async def part_urls(self, actor: User, upload_id: str, digest: str, numbers: list[int]) -> dict[int, str] | None:
        """Presigned URLs to PUT parts straight to the object store; None when it cannot sign
        (then the parts go through the platform: ``put_part``)."""
        upload = await self._upload(actor, upload_id, blob=digest)
        blob = self._pending(upload, digest)
        if not self.store.presigns:
            return None
        urls = {}
        for n in numbers:
            self._check_part(upload, blob, n, None)
            if blob.multipart_id:
                urls[n] = await self.store.presign_part(blob.staging_key, blob.multipart_id, n, self.presign_ttl)
            else:  # a file of one part: a presigned PUT of the whole object
                urls[n] = await self.store.presign_put(blob.staging_key, self.presign_ttl)
        return urls

    async def put_part(self, actor: User, upload_id: str, digest: str, number: int, data: bytes) -> str:
        """One part through the platform; a part sent again replaces the earlier one."""
        upload = await self._upload(actor, upload_id, blob=digest)
        blob = self._pending(upload, digest)
        self._check_part(upload, blob, number, len(data))
        if not blob.multipart_id:
            # The whole file, here in memory: hashed as it goes by and checked before it is
            # stored, so it needs no read-back (complete is then a no-op).
            actual = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
            if actual != digest:
                raise InvalidInput(f"the bytes received for {digest} do not match it (sha256 {actual}); send the file again",
                                   code="checksum_mismatch", details={"sha256": actual, "size": len(data)})
            await self.store.put(blob.staging_key, _one(data))
            await self._accept(upload_id, blob, len(data))
            return ""
        etag = await self.store.upload_part(blob.staging_key, blob.multipart_id, number, data)
        await self.catalog.record_part(upload.id, digest, number, etag, len(data), self.clock.now())
        return etag

    async def put_whole_files(self, actor: User, upload_id: str, digests: list[str], data: bytes | bytearray) -> list[str]:
        """The bytes of several files of one part each, one after the other in the order of
        ``digests``: each hashed here and stored verified (no read-back). All or nothing on a
        mismatch (InvalidInput ``checksum_mismatch`` naming them; nothing is stored)."""
        upload = await self._upload(actor, upload_id)
        if not 1 <= len(digests) <= 100 or len(set(digests)) != len(digests):
            raise InvalidInput("sha256: 1..100 distinct digests", details={"field": "sha256"})
        blobs = [self._pending(upload, d) for d in digests]
        several = [b.sha256 for b in blobs if b.multipart_id]
        if several:
            raise InvalidInput("files of more than one part go part by part", code="not_whole", details={"sha256": several})
        if len(data) != sum(b.size for b in blobs):
            raise InvalidInput(f"the body holds {len(data)} bytes; those files hold {sum(b.size for b in blobs)}",
                               code="wrong_part_size", details={"expected": sum(b.size for b in blobs)})
        view, offsets, at = memoryview(data), [], 0
        for b in blobs:
            offsets.append((at, at + b.size))
            at += b.size
        actual = await asyncio.to_thread(lambda: [hashlib.sha256(view[a:z]).hexdigest() for a, z in offsets])
        wrong = [d for d, a in zip(digests, actual) if a != d]
        if wrong:
            raise InvalidInput(f"the bytes of {len(wrong)} file(s) do not match their sha256; send them again",
                               code="checksum_mismatch", details={"sha256": wrong[:100]})
        gate = asyncio.Semaphore(8)

        async def store(blob: PendingBlob, start: int, end: int) -> None:
            async with gate:
                await self.store.put(blob.staging_key, _one(bytes(view[start:end])))
                if not blob.staging_key.startswith("blobs/"):  # an upload from before per-upload keys
                    await self._accept(upload_id, blob, end - start)

        await asyncio.gather(*(store(b, a, z) for b, (a, z) in zip(blobs, offsets)))
        # Recorded and marked verified together (one transaction); bytes another upload
        # verified first keep that upload's object, and these go.
        now = self.clock.now()
        keyed = [b for b in blobs if b.staging_key.startswith("blobs/")]
        if keyed:
            new = await self.catalog.add_blobs([Blob(b.sha256, b.size, now, b.staging_key) for b in keyed], verifies=upload_id)
            for b in keyed:
                if b.sha256 not in new:
                    await self.store.delete(b.staging_key)
        return digests

    async def complete_file(self, actor: User, upload_id: str, digest: str,
                            parts: list[tuple[int, str]] | None = None) -> Upload:
        """Assemble the parts (the recorded ones, or ``parts`` reported by a client that sent
        them by presigned URL), then recompute sha256 and size from the stored bytes. A
        mismatch discards the bytes (InvalidInput ``checksum_mismatch``: send the file again)."""
        upload = await self._upload(actor, upload_id, blob=digest)
        blob = self._pending(upload, digest, verified_ok=True)
        if blob.verified:  # already (a whole file sent through the platform): nothing left to do
            return await self._upload(actor, upload_id)
        count = m.part_count(blob.size, upload.part_size)
        got = dict(blob.parts)
        for number, etag in parts or []:
            got[number] = (etag.strip('"'), self._check_part(upload, blob, number, None))
        missing = [n for n in range(1, count + 1) if n not in got]
        if missing:
            raise Conflict(f"parts missing: {missing[:20]}", code="parts_missing", details={"missing": missing[:1000]})
        if blob.multipart_id:
            await self.store.complete_multipart(blob.staging_key, blob.multipart_id,
                                                [PartInfo(n, got[n][0], got[n][1]) for n in range(1, count + 1)])
        # else: one part, PUT whole to its key by presigned URL
        # One stream, hashed in a worker thread while the next chunk arrives. (Parallel ranged
        # reads were tried: moto's server reads the whole object for every range, 10x slower.)
        try:
            actual, size = await sha256_of(await self.store.get(blob.staging_key, chunk_size=VERIFY_CHUNK))
        except ObjectNotFound:
            raise Conflict("parts missing: [1]", code="parts_missing", details={"missing": [1]}) from None
        if actual != digest or size != blob.size:
            await self.store.delete(blob.staging_key)
            await self.catalog.reset_parts(upload_id, digest)
            upload = await self._upload(actor, upload_id)
            fresh = upload.pending[digest]
            fresh.multipart_id = await self.store.create_multipart(fresh.staging_key) if fresh.multipart_id else ""
            fresh.parts = {}
            upload.updated_at = self.clock.now()
            await self.catalog.update_upload(upload)  # the new multipart id (one file: no concurrent writer)
            raise InvalidInput(f"the bytes received for {digest} do not match it (sha256 {actual}, {size} bytes); "
                               "send the file again", code="checksum_mismatch",
                               details={"sha256": actual, "size": size})
        await self._accept(upload_id, blob, size)
        return await self._upload(actor, upload_id)

    async def _accept(self, upload_id: str, blob: PendingBlob, size: int) -> None:
        """A blob's bytes verified at its staging key: it becomes a blob of the platform."""
        digest = blob.sha256
        if blob.staging_key.startswith("blobs/"):
            # Assembled at a key of its own: it stays there (no copy). When another upload
            # verified the same bytes first, its object is kept and this one goes.
            if not await self.catalog.add_blob(Blob(digest, size, self.clock.now(), blob.staging_key), verifies=upload_id):
                await self.store.delete(blob.staging_key)
        else:  # an upload started before keys were per upload (uploads/<id>/<sha256>)
            await self.store.copy(blob.staging_key, m.blob_key(digest))
            await self.catalog.add_blob(Blob(digest, size, self.clock.now()), verifies=upload_id)
            await self.store.delete(blob.staging_key)

    async def commit(self, actor: User, upload_id: str) -> Version:
        """The new version, once every file is verified (Conflict ``upload_incomplete`` before)."""
        upload = await self._upload(actor, upload_id)
        waiting = sorted(d for d, p in upload.pending.items() if not p.verified)
        if waiting:
            raise Conflict(f"{len(waiting)} file(s) not uploaded and verified yet", code="upload_incomplete",
                           details={"waiting": waiting[:1000]})
        digests = sorted({f.sha256 for f in upload.files})
        known = await self.catalog.get_blobs(digests)
        if len(known) != len(digests):  # collected meanwhile (an upload older than the grace period)
            raise Conflict("some blobs are gone; start the upload again", code="blobs_gone")
        repo = await self._repo(actor, upload.repository_id, Role.MEMBER)
        await self._check_quota(repo.workspace_id, upload.files)
        for _ in range(5):
            versions = await self.catalog.list_versions(repo.id)
            version = Version(repository_id=repo.id, number=(versions[-1].number + 1) if versions else 1, files=upload.files,
                              created_by=actor.id, created_at=self.clock.now(), message=upload.message, source=upload.source)
            try:
                await self.catalog.add_version(version)
                break
            except Conflict:  # another commit took the number
                continue
        else:
            raise Conflict("could not number the version; try again", code="busy")
        if upload.tag:
            repo = await self.catalog.get_repository(repo.id) or repo
            repo.tags[upload.tag] = version.number
            repo.updated_at = self.clock.now()
            await self.catalog.update_repository(repo)
        await self.catalog.delete_upload(upload.id)
        return version

    async def abort(self, actor: User, upload_id: str) -> None:
        await self._drop_upload(await self._upload(actor, upload_id))

    async def _open_uploads(self, repo_id: str) -> list[Upload]:
        far = self.clock.now() + timedelta(days=36500)
        return [u for u in await self.catalog.stale_uploads(far) if u.repository_id == repo_id]

    async def _drop_upload(self, upload: Upload) -> None:
        for p in upload.pending.values():
            if not p.verified:
                if p.multipart_id:
                    await self.store.abort_multipart(p.staging_key, p.multipart_id)
                await self.store.delete(p.staging_key)
        await self.catalog.delete_upload(upload.id)

    # --- downloads ----------------------------------------------------------------------

    @staticmethod
    def _file(version: Version, path: str) -> FileEntry:
        for f in version.files:
            if f.path == path:
                return f
        raise NotFound(f"no file {path!r} in version {version.number}")

    async def file(self, actor: User, kind: Kind, repo_id: str, ref: str, path: str) -> tuple[Version, FileEntry]:
        _, version = await self.version(actor, kind, repo_id, ref)
        return version, self._file(version, path)

    async def object_keys(self, digests: list[str]) -> dict[str, str]:
        """Where each blob's bytes are (the classic key for one the catalog does not know)."""
        known = await self.catalog.get_blobs(digests)
        return {d: known[d].object_key if d in known else m.blob_key(d) for d in digests}

    async def open_file(self, entry: FileEntry, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        key = (await self.object_keys([entry.sha256]))[entry.sha256]
        return await self.store.get(key, offset=offset, length=length)

    async def file_url(self, entry: FileEntry) -> str | None:
        """A presigned GET URL of the file (None: the store cannot sign; download through the platform)."""
        if not self.store.presigns:
            return None
        key = (await self.object_keys([entry.sha256]))[entry.sha256]
        return await self.store.presign_get(key, self.presign_ttl, filename=entry.path.rsplit("/", 1)[-1])

    async def file_urls(self, actor: User, kind: Kind, repo_id: str, ref: str,
                        paths: list[str]) -> tuple[Version, list[tuple[FileEntry, str | None]]]:
        """Presigned GET URLs of many files of one version in one call (None per file: the store
        cannot sign). A pull of N files costs one request here, not N, and the version's
        manifest is read once."""
        _, version = await self.version(actor, kind, repo_id, ref)
        by_path = {f.path: f for f in version.files}
        missing = [p for p in paths if p not in by_path]
        if missing:
            raise NotFound(f"no file {missing[0]!r} in version {version.number}")
        entries = [by_path[p] for p in dict.fromkeys(paths)]
        if not self.store.presigns:
            return version, [(e, None) for e in entries]
        keys = await self.object_keys([e.sha256 for e in entries])
        return version, [(e, await self.store.presign_get(keys[e.sha256], self.presign_ttl, filename=e.path.rsplit("/", 1)[-1]))
                         for e in entries]

    async def archive(self, version: Version, prefix: str) -> AsyncIterator[bytes]:
        """The whole version as an uncompressed tar, streamed file by file (POSIX/pax headers)."""
        keys = await self.object_keys([f.sha256 for f in version.files])
        for f in version.files:
            info = tarfile.TarInfo(f"{prefix}/{f.path}")
            info.size, info.mode, info.mtime = f.size, 0o644, int(version.created_at.timestamp())
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            async for chunk in await self.store.get(keys[f.sha256]):
                yield chunk
            if f.size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - f.size % tarfile.BLOCKSIZE)
        yield b"\0" * (tarfile.BLOCKSIZE * 2)

    # --- housekeeping -------------------------------------------------------------------

    async def collect(self) -> GcReport:
        """Abandoned uploads (untouched for the grace period) are cleaned; blobs no version and
        no open upload references, older than the grace period, are removed. Crash-safe: the
        catalog row goes first, in a transaction that re-checks both conditions; a crash
        before the object is deleted leaves only an orphan object, which the next run removes
        once it is older than the grace period too."""
        cutoff = self.clock.now() - self.grace
        cleaned = 0
        for upload in await self.catalog.stale_uploads(cutoff):
            await self._drop_upload(upload)
            cleaned += 1
        removed = freed = 0
        for blob in await self.catalog.unreferenced_blobs(cutoff):
            if await self.catalog.delete_blob(blob.sha256, cutoff):
                await self.store.delete(blob.object_key)
                removed += 1
                freed += blob.size
        # Orphans: objects under blobs/ no catalog row points at (a crash between the two
        # steps; an upload's assembled blob that was not verified, or lost to another's).
        listed = await self.store.list("blobs/sha256/")
        known = await self.catalog.get_blobs([m.digest_of_key(o.key) for o in listed])
        for o in listed:
            digest = m.digest_of_key(o.key)
            if (digest not in known or known[digest].object_key != o.key) and o.modified is not None and o.modified < cutoff:
                await self.store.delete(o.key)
                removed += 1
                freed += o.size
        if removed or cleaned:
            log.info("storage collection: %d blobs (%d bytes) removed, %d abandoned uploads cleaned", removed, freed, cleaned)
        return GcReport(removed, freed, cleaned)


__all__ = ["StorageService", "GcReport", "ObjectNotFound"]


# --- mounts into environments ---------------------------------------------------------------

MAX_MOUNTS = 20


async def check_mounts(service: StorageService, actor: User, workspace_id: str,
                       requests: list[dict[str, str]]) -> list[dict[str, str]]:
    """What an environment of ``workspace_id`` created by ``actor`` may mount: datasets and
    models of that workspace (by name or id) or public ones (by id); the version must
    resolve now (it is resolved again at every start). Returns the stored form."""
    if len(requests) > MAX_MOUNTS:
        raise InvalidInput(f"at most {MAX_MOUNTS} mounts", details={"field": "mounts"})
    found: list[dict[str, str]] = []
    targets: set[str] = set()
    for req in requests:
        kind = Kind(req["kind"])
        repo = await service.catalog.find_repository(workspace_id, kind.value, req["name"])
        if repo is None:
            candidate = await service.catalog.get_repository(req["name"])
            if candidate is not None and candidate.kind is kind and (
                    candidate.workspace_id == workspace_id or candidate.visibility is Visibility.PUBLIC):
                repo = candidate
        if repo is None:
            raise InvalidInput(f"no {kind.value} {req['name']!r} in this workspace (or public)", code="mount_not_found",
                               details={"field": "mounts", "name": req["name"]})
        ref = req.get("version") or m.LATEST
        await service._resolve(repo, ref)  # NotFound → the caller learns now, not at start
        target = f"/{kind.value}s/{repo.name}"
        if target in targets:
            raise InvalidInput(f"{target} is mounted twice", details={"field": "mounts"})
        targets.add(target)
        found.append({"kind": kind.value, "repository_id": repo.id, "name": repo.name, "ref": ref})
    return found


@dataclass
class StorageMounts:
    """The storage side of environment mounts: validation at create (for the environment
    service), resolution at start (for the agent service), manifests and blobs for agents."""

    service: StorageService

    async def check_mounts(self, actor: User, workspace_id: str, requests: list[dict[str, str]]) -> list[dict[str, str]]:
        return await check_mounts(self.service, actor, workspace_id, requests)

    async def resolve(self, workspace_id: str, mounts: list[dict[str, str]]) -> list[tuple[str, str, str, int]]:
        """(target, kind, repository id, version number) of each mount that still resolves;
        one that does not (deleted meanwhile) is left out and logged."""
        resolved = []
        for mount in mounts:
            repo = await self.service.catalog.get_repository(mount["repository_id"])
            if repo is None or (repo.workspace_id != workspace_id and repo.visibility is not Visibility.PUBLIC):
                log.warning("mount %s/%s: the %s is gone; not mounted", mount["kind"], mount["name"], mount["kind"])
                continue
            try:
                version = await self.service._resolve(repo, mount["ref"])
            except NotFound:
                log.warning("mount %s/%s: version %r is gone; not mounted", mount["kind"], mount["name"], mount["ref"])
                continue
            resolved.append((f"/{repo.kind.value}s/{repo.name}", repo.kind.value, repo.id, version.number))
        return resolved

    async def storage_gib_held(self, workspace_id: str) -> int:
        """For the environment create's quota check: the shared disk's size plus the
        workspace's dataset/model bytes (deduplicated), in GiB rounded up."""
        disk = await self.service.catalog.get_shared_disk(workspace_id)
        held = await self.service.catalog.workspace_bytes(workspace_id)
        return (disk.size_gib if disk else 0) + -(-held // GiB)

    async def shared_disk_gib(self, workspace_id: str) -> int | None:
        """The size of the workspace's shared disk, for the agent's spec (None: it has none)."""
        disk = await self.service.catalog.get_shared_disk(workspace_id)
        return disk.size_gib if disk else None

    async def manifest(self, repository_id: str, version: int) -> list[FileEntry]:
        found = await self.service.catalog.get_version(repository_id, version)
        if found is None:
            raise NotFound("version not found")
        return found.files

    async def open_blob(self, digest: str) -> AsyncIterator[bytes]:
        known = await self.service.catalog.get_blobs([digest])
        if not known:
            raise NotFound("blob not found")
        return await self.service.store.get(known[digest].object_key)
