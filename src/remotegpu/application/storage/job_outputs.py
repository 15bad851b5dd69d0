"""The storage side of training-job outputs: a job declares a directory of its node 0
and a model (or dataset) of its workspace; when the job succeeds, node 0's agent sends
that directory as a tar archive and it becomes the next version, its source the job.

The archive goes through the same upload protocol as a person's push (quota, blobs
stored once per sha256, each blob verified from the stored bytes, the version committed
only when every file is), acting as the job's owner.
"""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from remotegpu.application.storage.service import StorageService
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import InvalidInput, NotFound
from remotegpu.domain.storage import models as m
from remotegpu.domain.storage.models import FileEntry, Kind, Provenance, SourceKind
from remotegpu.domain.workspaces.models import Role

HASH_CHUNK = 1024 * 1024


def _relative(name: str, top: str) -> str | None:
    """The member's path inside the output directory (Docker's archive of ``/x/out`` names
    its entries ``out/...``); None for what lies outside it."""
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".", "/")]
    if not parts or ".." in parts:
        return None
    if parts[0] == top and len(parts) > 1:
        parts = parts[1:]
    return "/".join(parts)


def read_manifest(archive: Path, top: str) -> tuple[list[FileEntry], dict[str, str]]:
    """Regular files of the archive (links, devices and the like are left out) with their
    sha256, and for each sha256 the member that holds it. Blocking: run it in a thread."""
    files: list[FileEntry] = []
    members: dict[str, str] = {}
    with tarfile.open(archive, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            path = _relative(member.name, top)
            if path is None:
                continue
            digest = hashlib.sha256()
            source = tar.extractfile(member)
            assert source is not None
            while chunk := source.read(HASH_CHUNK):
                digest.update(chunk)
            sha = digest.hexdigest()
            files.append(FileEntry(path, member.size, sha))
            members.setdefault(sha, member.name)
            if len(files) > m.MAX_FILES_PER_VERSION:
                break
    return files, members


def _read_parts(archive: Path, member_name: str, part_size: int):
    tar = tarfile.open(archive, mode="r:")
    source = tar.extractfile(tar.getmember(member_name))
    assert source is not None
    return tar, source


@dataclass
class JobOutputVersions:
    service: StorageService

    async def check_target(self, actor: User, workspace_id: str, kind: str, name: str) -> dict[str, str]:
        """The model or dataset (by name or id) a job of ``workspace_id`` may add versions
        to: one of that workspace's, where ``actor`` may write. Anything else answers 404
        (another tenant's is as unknown as a missing one; a public one of another workspace
        is readable, not writable)."""
        try:
            k = Kind(kind)
        except ValueError:
            raise InvalidInput("output.kind must be model or dataset", details={"field": "output.kind"}) from None
        catalog = self.service.catalog
        repo = await catalog.find_repository(workspace_id, k.value, name) or await catalog.get_repository(name)
        if repo is None or repo.kind is not k or repo.workspace_id != workspace_id:
            raise NotFound(f"{k.value} not found")
        repo = await self.service._repo(actor, repo.id, Role.MEMBER, k)
        return {"kind": k.value, "repository_id": repo.id, "name": repo.name}

    async def store_archive(self, actor: User, kind: str, repository_id: str, archive: Path, *, top: str,
                            job_id: str, message: str) -> int:
        """The archive's files as the next version (its number); InvalidInput when it holds
        no file, the storage context's errors (quota, ...) as they come."""
        k = Kind(kind)
        files, members = await asyncio.to_thread(read_manifest, archive, top)
        if not files:
            raise InvalidInput("the output directory holds no file", details={"field": "output.path"})
        service = self.service
        upload = await service.start_upload(actor, k, repository_id, files, message=message,
                                            source=Provenance(SourceKind.JOB, job_id))
        try:
            for digest, blob in upload.pending.items():
                tar, source = await asyncio.to_thread(_read_parts, archive, members[digest], upload.part_size)
                try:
                    for number in range(1, m.part_count(blob.size, upload.part_size) + 1):
                        data = await asyncio.to_thread(source.read, upload.part_size)
                        await service.put_part(actor, upload.id, digest, number, data)
                finally:
                    tar.close()
                await service.complete_file(actor, upload.id, digest)
            version = await service.commit(actor, upload.id)
        except BaseException:
            try:
                await service.abort(actor, upload.id)
            except Exception:  # noqa: BLE001 - the original error matters; GC cleans the rest
                pass
            raise
        return version.number
