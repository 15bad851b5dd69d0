"""The storage catalog in memory (tests, ``persistence=memory``); hands out copies, like a database."""

from __future__ import annotations

import copy
from datetime import datetime

from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.storage.models import Blob, Repository, SharedDisk, Upload, UploadState, Version


class InMemoryStorageCatalog:
    def __init__(self) -> None:
        self.repositories: dict[str, Repository] = {}
        self.versions: dict[tuple[str, int], Version] = {}
        self.blobs: dict[str, Blob] = {}
        self.uploads: dict[str, Upload] = {}
        self.shared_disks: dict[str, SharedDisk] = {}

    async def add_repository(self, repo: Repository) -> None:
        if await self.find_repository(repo.workspace_id, repo.kind.value, repo.name):
            raise Conflict(f"the workspace already has a {repo.kind.value} named {repo.name!r}", code="name_taken")
        self.repositories[repo.id] = copy.deepcopy(repo)

    async def get_repository(self, repo_id: str) -> Repository | None:
        return copy.deepcopy(self.repositories.get(repo_id))

    async def find_repository(self, workspace_id: str, kind: str, name: str) -> Repository | None:
        for r in self.repositories.values():
            if (r.workspace_id, r.kind.value, r.name) == (workspace_id, kind, name):
                return copy.deepcopy(r)
        return None

    async def list_repositories(self, kind: str, workspace_id: str | None, *, public: bool) -> list[Repository]:
        def wanted(r: Repository) -> bool:
            is_public = r.visibility.value == "public"
            if workspace_id is None:
                return is_public or not public
            return r.workspace_id == workspace_id or (public and is_public)

        found = [r for r in self.repositories.values() if r.kind.value == kind and wanted(r)]
        return [copy.deepcopy(r) for r in sorted(found, key=lambda r: (r.name, r.id))]

    async def update_repository(self, repo: Repository) -> None:
        if repo.id in self.repositories:
            self.repositories[repo.id] = copy.deepcopy(repo)

    async def delete_repository(self, repo_id: str) -> None:
        self.repositories.pop(repo_id, None)
        for key in [k for k in self.versions if k[0] == repo_id]:
            del self.versions[key]
        for uid in [u.id for u in self.uploads.values() if u.repository_id == repo_id]:
            del self.uploads[uid]

    async def add_version(self, version: Version) -> None:
        key = (version.repository_id, version.number)
        if key in self.versions:
            raise Conflict("that version exists already", code="version_exists")
        self.versions[key] = copy.deepcopy(version)

    async def get_version(self, repo_id: str, number: int) -> Version | None:
        return copy.deepcopy(self.versions.get((repo_id, number)))

    async def list_versions(self, repo_id: str) -> list[Version]:
        return [copy.deepcopy(v) for k, v in sorted(self.versions.items()) if k[0] == repo_id]

    async def delete_version(self, repo_id: str, number: int) -> None:
        self.versions.pop((repo_id, number), None)
        repo = self.repositories.get(repo_id)
        if repo is not None:
            repo.tags = {t: n for t, n in repo.tags.items() if n != number}

    async def add_blobs(self, blobs: list[Blob], *, verifies: str) -> set[str]:
        return {b.sha256 for b in blobs if await self.add_blob(b, verifies=verifies)}

    async def add_blob(self, blob: Blob, *, verifies: str | None = None) -> bool:
        if verifies is not None:
            await self.mark_verified(verifies, blob.sha256, blob.created_at)
        if blob.sha256 in self.blobs:
            return False
        self.blobs[blob.sha256] = blob
        return True

    async def get_blobs(self, digests: list[str]) -> dict[str, Blob]:
        return {d: self.blobs[d] for d in digests if d in self.blobs}

    def _referenced(self) -> set[str]:
        refs = {f.sha256 for v in self.versions.values() for f in v.files}
        refs |= {f.sha256 for u in self.uploads.values() if u.state is UploadState.OPEN for f in u.files}
        return refs

    async def unreferenced_blobs(self, older_than: datetime) -> list[Blob]:
        refs = self._referenced()
        return [b for d, b in sorted(self.blobs.items()) if d not in refs and b.created_at < older_than]

    async def delete_blob(self, digest: str, older_than: datetime) -> bool:
        blob = self.blobs.get(digest)
        if blob is None or digest in self._referenced() or blob.created_at >= older_than:
            return False
        del self.blobs[digest]
        return True

    def _bytes(self, versions) -> int:
        distinct = {f.sha256: f.size for v in versions for f in v.files}
        return sum(distinct.values())

    async def workspace_bytes(self, workspace_id: str) -> int:
        repos = {r.id for r in self.repositories.values() if r.workspace_id == workspace_id}
        return self._bytes(v for k, v in self.versions.items() if k[0] in repos)

    async def repository_bytes(self, repo_id: str) -> int:
        return self._bytes(v for k, v in self.versions.items() if k[0] == repo_id)

    async def add_upload(self, upload: Upload) -> None:
        self.uploads[upload.id] = copy.deepcopy(upload)

    async def get_upload(self, upload_id: str, *, blob: str | None = None) -> Upload | None:
        upload = copy.deepcopy(self.uploads.get(upload_id))
        if upload is not None and blob is not None:
            upload.files, upload.pending = [], {k: v for k, v in upload.pending.items() if k == blob}
        return upload

    async def update_upload(self, upload: Upload) -> None:
        if upload.id in self.uploads:
            self.uploads[upload.id] = copy.deepcopy(upload)

    async def delete_upload(self, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)

    async def record_part(self, upload_id: str, sha256: str, number: int, etag: str, size: int, now: datetime) -> None:
        upload = self.uploads.get(upload_id)
        if upload is not None and sha256 in upload.pending:
            upload.pending[sha256].parts[number] = (etag, size)
            upload.updated_at = now

    async def mark_verified(self, upload_id: str, sha256: str, now: datetime) -> None:
        upload = self.uploads.get(upload_id)
        if upload is not None and sha256 in upload.pending:
            upload.pending[sha256].verified = True
            upload.pending[sha256].parts = {}
            upload.updated_at = now

    async def reset_parts(self, upload_id: str, sha256: str) -> None:
        upload = self.uploads.get(upload_id)
        if upload is not None and sha256 in upload.pending:
            upload.pending[sha256].parts = {}

    async def stale_uploads(self, before: datetime) -> list[Upload]:
        return [copy.deepcopy(u) for u in self.uploads.values() if u.state is UploadState.OPEN and u.updated_at < before]

    async def get_shared_disk(self, workspace_id: str) -> SharedDisk | None:
        return copy.deepcopy(self.shared_disks.get(workspace_id))

    async def put_shared_disk(self, disk: SharedDisk) -> None:
        self.shared_disks[disk.workspace_id] = copy.deepcopy(disk)

    async def delete_shared_disk(self, workspace_id: str) -> None:
        self.shared_disks.pop(workspace_id, None)
