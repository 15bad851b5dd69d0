"""The storage catalog in SQL (SQLite or PostgreSQL): each call one short transaction."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, AsyncIterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.adapters.storage.codec import files_json, files_of, model_json, model_of, pending_json, pending_of
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.storage.models import (
    Blob, FileEntry, Kind, Provenance, Repository, SharedDisk, SourceKind, Upload, UploadState, Version, Visibility,
)

_R, _V, _F, _B = t.storage_repositories, t.storage_versions, t.storage_version_files, t.storage_blobs
_U, _UB, _UP = t.storage_uploads, t.storage_upload_blobs, t.storage_upload_parts
_SD = t.workspace_shared_disks


def _repo_row(r: Repository) -> dict[str, Any]:
    return dict(id=r.id, workspace_id=r.workspace_id, kind=r.kind.value, name=r.name, description=r.description,
                visibility=r.visibility.value, tags=json.dumps(r.tags, sort_keys=True), model=model_json(r.model),
                created_by=r.created_by, created_at=r.created_at, updated_at=r.updated_at)


def _repo(row: Any) -> Repository:
    return Repository(id=row.id, workspace_id=row.workspace_id, kind=Kind(row.kind), name=row.name, created_by=row.created_by,
                      created_at=row.created_at, updated_at=row.updated_at, description=row.description,
                      visibility=Visibility(row.visibility), tags=json.loads(row.tags), model=model_of(row.model))


def _source(kind: str | None, source_id: str | None) -> Provenance | None:
    return Provenance(SourceKind(kind), source_id) if kind and source_id else None


def _blob(r: Any) -> Blob:
    return Blob(r.sha256, r.size, r.created_at, r.object_key)


def _upload_row(u: Upload) -> dict[str, Any]:
    return dict(id=u.id, repository_id=u.repository_id, workspace_id=u.workspace_id, created_by=u.created_by,
                created_at=u.created_at, updated_at=u.updated_at, state=u.state.value, part_size=u.part_size,
                message=u.message, tag=u.tag, files=files_json(u.files),
                source_kind=u.source.kind.value if u.source else None, source_id=u.source.id if u.source else None,
                # parts and verification live in storage_upload_parts (one row each): not here
                pending=pending_json({k: replace(v, parts={}, verified=False) for k, v in u.pending.items()}))


def _upload(row: Any, *, blob: str | None = None) -> Upload:
    return Upload(id=row.id, repository_id=row.repository_id, workspace_id=row.workspace_id, created_by=row.created_by,
                  created_at=row.created_at, updated_at=row.updated_at, files=files_of(row.files) if blob is None else [],
                  part_size=row.part_size, pending=pending_of(row.pending, only=blob), message=row.message, tag=row.tag, state=UploadState(row.state),
                  source=_source(row.source_kind, row.source_id))


def _with_parts(upload: Upload, parts: list[Any]) -> Upload:
    for p in parts:
        blob = upload.pending.get(p.sha256)
        if blob is None:
            continue
        if p.number == 0:
            blob.verified, blob.parts = True, {}
        elif not blob.verified:
            blob.parts[p.number] = (p.etag, p.size)
    return upload


def _unreferenced(older_than: datetime):
    return sa.and_(
        _B.c.created_at < older_than,
        ~sa.exists().where(_F.c.sha256 == _B.c.sha256),
        ~sa.exists().where(_UB.c.sha256 == _B.c.sha256),
    )


class SqlStorageCatalog:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory
        bind = session_factory.kw.get("bind")
        # SQLite has one writer at a time. Hundreds of concurrent part/complete requests (a
        # push of many small files) each holding the write lock across event-loop turns
        # outlasted busy_timeout ("database is locked", a 500): on SQLite the catalog's write
        # transactions queue here instead, in this process, one at a time.
        self._serial_writes = bind is None or bind.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = None
        self._write_loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        if not self._serial_writes:
            async with self._sessions() as s, s.begin():
                yield s
            return
        loop = asyncio.get_running_loop()
        if self._write_loop is not loop:
            self._write_lock, self._write_loop = asyncio.Lock(), loop
        assert self._write_lock is not None
        async with self._write_lock, self._sessions() as s, s.begin():
            yield s

    async def _rows(self, query: Any) -> list[Any]:
        async with self._sessions() as s:
            return list((await s.execute(query)).all())

    # --- repositories -------------------------------------------------------------------

    async def add_repository(self, repo: Repository) -> None:
        try:
            async with self._tx() as s:
                await s.execute(_R.insert().values(**_repo_row(repo)))
        except IntegrityError:
            raise Conflict(f"the workspace already has a {repo.kind.value} named {repo.name!r}", code="name_taken") from None

    async def get_repository(self, repo_id: str) -> Repository | None:
        rows = await self._rows(sa.select(_R).where(_R.c.id == repo_id))
        return _repo(rows[0]) if rows else None

    async def find_repository(self, workspace_id: str, kind: str, name: str) -> Repository | None:
        rows = await self._rows(sa.select(_R).where(_R.c.workspace_id == workspace_id, _R.c.kind == kind, _R.c.name == name))
        return _repo(rows[0]) if rows else None

    async def list_repositories(self, kind: str, workspace_id: str | None, *, public: bool) -> list[Repository]:
        query = sa.select(_R).where(_R.c.kind == kind)
        if workspace_id is None:
            if public:
                query = query.where(_R.c.visibility == Visibility.PUBLIC.value)
        elif public:
            query = query.where(sa.or_(_R.c.workspace_id == workspace_id, _R.c.visibility == Visibility.PUBLIC.value))
        else:
            query = query.where(_R.c.workspace_id == workspace_id)
        return [_repo(r) for r in await self._rows(query.order_by(_R.c.name, _R.c.id))]

    async def update_repository(self, repo: Repository) -> None:
        row = _repo_row(repo)
        for key in ("id", "workspace_id", "kind", "created_by", "created_at"):
            row.pop(key)
        async with self._tx() as s:
            await s.execute(_R.update().where(_R.c.id == repo.id).values(**row))

    async def delete_repository(self, repo_id: str) -> None:
        async with self._tx() as s:
            await s.execute(_F.delete().where(_F.c.repository_id == repo_id))
            await s.execute(_V.delete().where(_V.c.repository_id == repo_id))
            uploads = sa.select(_U.c.id).where(_U.c.repository_id == repo_id)
            await s.execute(_UB.delete().where(_UB.c.upload_id.in_(uploads)))
            await s.execute(_U.delete().where(_U.c.repository_id == repo_id))
            await s.execute(_R.delete().where(_R.c.id == repo_id))

    # --- versions -----------------------------------------------------------------------

    async def add_version(self, version: Version) -> None:
        try:
            async with self._tx() as s:
                src = version.source
                await s.execute(_V.insert().values(repository_id=version.repository_id, number=version.number, message=version.message,
                                                   created_by=version.created_by, created_at=version.created_at,
                                                   source_kind=src.kind.value if src else None, source_id=src.id if src else None))
                if version.files:
                    await s.execute(_F.insert(), [dict(repository_id=version.repository_id, number=version.number, path=f.path,
                                                       size=f.size, sha256=f.sha256) for f in version.files])
        except IntegrityError:
            raise Conflict("that version exists already", code="version_exists") from None

    async def _versions(self, where: Any) -> list[Version]:
        async with self._sessions() as s:
            heads = (await s.execute(sa.select(_V).where(where).order_by(_V.c.number))).all()
            if not heads:
                return []
            files = (await s.execute(sa.select(_F).where(
                _F.c.repository_id == heads[0].repository_id, _F.c.number.in_([h.number for h in heads]))
                .order_by(_F.c.number, _F.c.path))).all()
        by_number: dict[int, list[FileEntry]] = {}
        for f in files:
            by_number.setdefault(f.number, []).append(FileEntry(f.path, f.size, f.sha256))
        return [Version(repository_id=h.repository_id, number=h.number, files=by_number.get(h.number, []), created_by=h.created_by,
                        created_at=h.created_at, message=h.message, source=_source(h.source_kind, h.source_id)) for h in heads]

    async def get_version(self, repo_id: str, number: int) -> Version | None:
        found = await self._versions(sa.and_(_V.c.repository_id == repo_id, _V.c.number == number))
        return found[0] if found else None

    async def list_versions(self, repo_id: str) -> list[Version]:
        return await self._versions(_V.c.repository_id == repo_id)

    async def delete_version(self, repo_id: str, number: int) -> None:
        async with self._tx() as s:
            await s.execute(_F.delete().where(_F.c.repository_id == repo_id, _F.c.number == number))
            await s.execute(_V.delete().where(_V.c.repository_id == repo_id, _V.c.number == number))
            row = (await s.execute(sa.select(_R.c.tags).where(_R.c.id == repo_id).with_for_update())).first()
            if row is not None:
                tags = {k: v for k, v in json.loads(row.tags).items() if v != number}
                await s.execute(_R.update().where(_R.c.id == repo_id).values(tags=json.dumps(tags, sort_keys=True)))

    # --- blobs --------------------------------------------------------------------------

    async def add_blob(self, blob: Blob, *, verifies: str | None = None) -> bool:
        try:
            async with self._tx() as s:
                await s.execute(_B.insert().values(sha256=blob.sha256, size=blob.size, created_at=blob.created_at,
                                                   object_key=blob.key))
                if verifies is not None:
                    await self._mark_verified(s, verifies, blob.sha256, blob.created_at)
            return True
        except IntegrityError:
            if verifies is not None:
                await self.mark_verified(verifies, blob.sha256, blob.created_at)
            return False

    async def get_blobs(self, digests: list[str]) -> dict[str, Blob]:
        found: dict[str, Blob] = {}
        unique = sorted(set(digests))
        for i in range(0, len(unique), 1000):
            for r in await self._rows(sa.select(_B).where(_B.c.sha256.in_(unique[i:i + 1000]))):
                found[r.sha256] = _blob(r)
        return found

    async def unreferenced_blobs(self, older_than: datetime) -> list[Blob]:
        rows = await self._rows(sa.select(_B).where(_unreferenced(older_than)).order_by(_B.c.sha256))
        return [_blob(r) for r in rows]

    async def delete_blob(self, digest: str, older_than: datetime) -> bool:
        async with self._tx() as s:
            result = await s.execute(_B.delete().where(_B.c.sha256 == digest, _unreferenced(older_than)))
        return bool(result.rowcount)

    async def _bytes(self, where: Any) -> int:
        distinct = sa.select(_F.c.sha256, sa.func.max(_F.c.size).label("size")).where(where).group_by(_F.c.sha256).subquery()
        async with self._sessions() as s:
            return int((await s.execute(sa.select(sa.func.coalesce(sa.func.sum(distinct.c.size), 0)))).scalar_one())

    async def workspace_bytes(self, workspace_id: str) -> int:
        return await self._bytes(_F.c.repository_id.in_(sa.select(_R.c.id).where(_R.c.workspace_id == workspace_id)))

    async def repository_bytes(self, repo_id: str) -> int:
        return await self._bytes(_F.c.repository_id == repo_id)

    # --- uploads ------------------------------------------------------------------------

    async def add_upload(self, upload: Upload) -> None:
        async with self._tx() as s:
            await s.execute(_U.insert().values(**_upload_row(upload)))
            digests = sorted({f.sha256 for f in upload.files})
            if digests:
                await s.execute(_UB.insert(), [dict(upload_id=upload.id, sha256=d) for d in digests])

    async def get_upload(self, upload_id: str, *, blob: str | None = None) -> Upload | None:
        async with self._sessions() as s:
            if blob is None:
                rows = (await s.execute(sa.select(_U).where(_U.c.id == upload_id))).all()
            else:  # one blob's view: neither the manifest nor the other blobs are decoded
                rows = (await s.execute(sa.select(*(c for c in _U.c if c.name != "files")).where(_U.c.id == upload_id))).all()
            if not rows:
                return None
            parts_q = sa.select(_UP).where(_UP.c.upload_id == upload_id)
            parts = (await s.execute(parts_q if blob is None else parts_q.where(_UP.c.sha256 == blob))).all()
        return _with_parts(_upload(rows[0], blob=blob), parts)

    async def update_upload(self, upload: Upload) -> None:
        row = _upload_row(upload)
        for key in ("id", "repository_id", "workspace_id", "created_by", "created_at", "files"):
            row.pop(key)
        async with self._tx() as s:
            await s.execute(_U.update().where(_U.c.id == upload.id).values(**row))

    async def delete_upload(self, upload_id: str) -> None:
        async with self._tx() as s:
            await s.execute(_UP.delete().where(_UP.c.upload_id == upload_id))
            await s.execute(_UB.delete().where(_UB.c.upload_id == upload_id))
            await s.execute(_U.delete().where(_U.c.id == upload_id))

    async def stale_uploads(self, before: datetime) -> list[Upload]:
        rows = await self._rows(sa.select(_U).where(_U.c.state == UploadState.OPEN.value, _U.c.updated_at < before))
        found = []
        for r in rows:
            parts = await self._rows(sa.select(_UP).where(_UP.c.upload_id == r.id))
            found.append(_with_parts(_upload(r), parts))
        return found

    async def record_part(self, upload_id: str, sha256: str, number: int, etag: str, size: int, now: datetime) -> None:
        async with self._tx() as s:
            await s.execute(_UP.delete().where(_UP.c.upload_id == upload_id, _UP.c.sha256 == sha256, _UP.c.number == number))
            await s.execute(_UP.insert().values(upload_id=upload_id, sha256=sha256, number=number, etag=etag, size=size))
            await s.execute(_U.update().where(_U.c.id == upload_id).values(updated_at=now))

    async def add_blobs(self, blobs: list[Blob], *, verifies: str) -> set[str]:
        try:
            async with self._tx() as s:
                digests = [b.sha256 for b in blobs]
                known = set((await s.execute(sa.select(_B.c.sha256).where(_B.c.sha256.in_(digests)))).scalars())
                new = [b for b in blobs if b.sha256 not in known]
                if new:
                    await s.execute(_B.insert(), [dict(sha256=b.sha256, size=b.size, created_at=b.created_at, object_key=b.key)
                                                  for b in new])
                await s.execute(_UP.delete().where(_UP.c.upload_id == verifies, _UP.c.sha256.in_(digests)))
                await s.execute(_UP.insert(), [dict(upload_id=verifies, sha256=d, number=0, etag="verified", size=0) for d in digests])
                await s.execute(_U.update().where(_U.c.id == verifies).values(updated_at=max(b.created_at for b in blobs)))
            return {b.sha256 for b in new}
        except IntegrityError:  # another process recorded one meanwhile: one by one
            return {b.sha256 for b in blobs if await self.add_blob(b, verifies=verifies)}

    async def mark_verified(self, upload_id: str, sha256: str, now: datetime) -> None:
        async with self._tx() as s:
            await self._mark_verified(s, upload_id, sha256, now)

    @staticmethod
    async def _mark_verified(s: AsyncSession, upload_id: str, sha256: str, now: datetime) -> None:
        await s.execute(_UP.delete().where(_UP.c.upload_id == upload_id, _UP.c.sha256 == sha256))
        await s.execute(_UP.insert().values(upload_id=upload_id, sha256=sha256, number=0, etag="verified", size=0))
        await s.execute(_U.update().where(_U.c.id == upload_id).values(updated_at=now))

    async def reset_parts(self, upload_id: str, sha256: str) -> None:
        async with self._tx() as s:
            await s.execute(_UP.delete().where(_UP.c.upload_id == upload_id, _UP.c.sha256 == sha256))

    # --- workspace shared disks ---------------------------------------------------------

    async def get_shared_disk(self, workspace_id: str) -> SharedDisk | None:
        rows = await self._rows(sa.select(_SD).where(_SD.c.workspace_id == workspace_id))
        return SharedDisk(rows[0].workspace_id, rows[0].size_gib, rows[0].created_at, rows[0].updated_at) if rows else None

    async def put_shared_disk(self, disk: SharedDisk) -> None:
        async with self._tx() as s:
            done = await s.execute(_SD.update().where(_SD.c.workspace_id == disk.workspace_id)
                                   .values(size_gib=disk.size_gib, updated_at=disk.updated_at))
            if not done.rowcount:
                await s.execute(_SD.insert().values(workspace_id=disk.workspace_id, size_gib=disk.size_gib,
                                                    created_at=disk.created_at, updated_at=disk.updated_at))

    async def delete_shared_disk(self, workspace_id: str) -> None:
        async with self._tx() as s:
            await s.execute(_SD.delete().where(_SD.c.workspace_id == workspace_id))
