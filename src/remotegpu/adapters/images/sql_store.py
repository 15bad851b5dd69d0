"""The image catalog and its jobs in SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.domain.images.models import (
    CatalogImage,
    ImageJob,
    ImageSource,
    ImageStatus,
    JobKind,
    JobStatus,
    Visibility,
)
from remotegpu.domain.shared.errors import Conflict

_I, _J = t.catalog_images, t.image_jobs
_IMAGE_FIELDS = [c.name for c in _I.columns]
_JOB_FIELDS = [c.name for c in _J.columns]


def _image_row(i: CatalogImage) -> dict[str, Any]:
    return dict(
        id=i.id, name=i.name, tag=i.tag, reference=i.reference, visibility=i.visibility.value, workspace_id=i.workspace_id,
        created_by=i.created_by, created_at=i.created_at, updated_at=i.updated_at, status=i.status.value,
        source=i.source.value, digest=i.digest, size_bytes=i.size_bytes, layers=i.layers, description=i.description,
        metadata=json.dumps(i.metadata, sort_keys=True), preload=i.preload, error=i.error,
    )


def _image(r: Any) -> CatalogImage:
    return CatalogImage(
        id=r.id, name=r.name, tag=r.tag, reference=r.reference, visibility=Visibility(r.visibility),
        workspace_id=r.workspace_id, created_by=r.created_by, created_at=r.created_at, updated_at=r.updated_at,
        status=ImageStatus(r.status), source=ImageSource(r.source), digest=r.digest, size_bytes=r.size_bytes,
        layers=r.layers, description=r.description, metadata=json.loads(r.metadata), preload=r.preload, error=r.error,
    )


def _job_row(j: ImageJob) -> dict[str, Any]:
    return dict(
        id=j.id, kind=j.kind.value, image_id=j.image_id, workspace_id=j.workspace_id, created_by=j.created_by,
        created_at=j.created_at, target=j.target, host_id=j.host_id, status=j.status.value, env_id=j.env_id,
        dockerfile=j.dockerfile, context=j.context, base_reference=j.base_reference, timeout_seconds=j.timeout_seconds,
        cpu_cores=j.cpu_cores, memory_gib=j.memory_gib, log=j.log, log_dropped=j.log_dropped, error=j.error,
        progress=j.progress[:300], started_at=j.started_at, finished_at=j.finished_at, cancel_requested=j.cancel_requested,
    )


def _job(r: Any) -> ImageJob:
    return ImageJob(
        id=r.id, kind=JobKind(r.kind), image_id=r.image_id, workspace_id=r.workspace_id, created_by=r.created_by,
        created_at=r.created_at, target=r.target, host_id=r.host_id, status=JobStatus(r.status), env_id=r.env_id,
        dockerfile=r.dockerfile, context=r.context, base_reference=r.base_reference, timeout_seconds=r.timeout_seconds,
        cpu_cores=r.cpu_cores, memory_gib=r.memory_gib, log=r.log, log_dropped=r.log_dropped, error=r.error,
        progress=r.progress, started_at=r.started_at, finished_at=r.finished_at, cancel_requested=r.cancel_requested,
    )


class SqlImageStore:
    """Satisfies ``application.images.ports.ImageStore``: each call one short transaction."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory

    async def _write(self, *statements: Any) -> None:
        async with self._sessions() as s, s.begin():
            for statement in statements:
                await s.execute(statement)

    async def _rows(self, query: Any) -> list[Any]:
        async with self._sessions() as s:
            return list((await s.execute(query)).all())

    async def add_image(self, image: CatalogImage) -> None:
        try:
            await self._write(_I.insert().values(**_image_row(image)))
        except IntegrityError:
            raise Conflict(f"{image.reference} is in the catalog already", code="image_exists") from None

    async def get_image(self, image_id: str) -> CatalogImage | None:
        rows = await self._rows(sa.select(_I).where(_I.c.id == image_id))
        return _image(rows[0]) if rows else None

    async def find_image(self, reference: str) -> CatalogImage | None:
        rows = await self._rows(sa.select(_I).where(_I.c.reference == reference))
        return _image(rows[0]) if rows else None

    async def list_images(self, workspace_ids: list[str] | None) -> list[CatalogImage]:
        query = sa.select(_I)
        if workspace_ids is not None:
            query = query.where(sa.or_(_I.c.workspace_id.is_(None), _I.c.workspace_id.in_(workspace_ids)))
        return [_image(r) for r in await self._rows(query.order_by(_I.c.created_at.desc(), _I.c.id))]

    async def update_image(self, image: CatalogImage) -> None:
        row = _image_row(image)
        for key in ("id", "created_at", "created_by"):
            row.pop(key)
        await self._write(_I.update().where(_I.c.id == image.id).values(**row))

    async def delete_image(self, image_id: str) -> None:
        await self._write(_J.delete().where(_J.c.image_id == image_id), _I.delete().where(_I.c.id == image_id))

    async def workspace_image_bytes(self, workspace_id: str) -> int:
        rows = await self._rows(sa.select(sa.func.coalesce(sa.func.sum(_I.c.size_bytes), 0)).where(
            _I.c.workspace_id == workspace_id, _I.c.status != ImageStatus.FAILED.value))
        return int(rows[0][0])

    async def set_host_images(self, host_id: str, references: list[str]) -> None:
        _H = t.host_images
        async with self._sessions() as s, s.begin():
            have = {r.reference for r in (await s.execute(sa.select(_H.c.reference).where(_H.c.host_id == host_id))).all()}
            want = set(references)
            if have == want:
                return
            if have - want:
                await s.execute(_H.delete().where(_H.c.host_id == host_id, _H.c.reference.in_(sorted(have - want))))
            if want - have:
                await s.execute(_H.insert(), [{"host_id": host_id, "reference": r} for r in sorted(want - have)])

    async def hosts_with_image(self, reference: str) -> set[str]:
        _H = t.host_images
        return {r.host_id for r in await self._rows(sa.select(_H.c.host_id).where(_H.c.reference == reference))}

    async def add_job(self, job: ImageJob) -> None:
        await self._write(_J.insert().values(**_job_row(job)))

    async def get_job(self, job_id: str) -> ImageJob | None:
        rows = await self._rows(sa.select(_J).where(_J.c.id == job_id))
        return _job(rows[0]) if rows else None

    async def update_job(self, job: ImageJob) -> None:
        row = _job_row(job)
        for key in ("id", "created_at", "created_by", "image_id"):
            row.pop(key)
        await self._write(_J.update().where(_J.c.id == job.id).values(**row))

    async def list_jobs(self, *, image_id: str | None = None, host_id: str | None = None,
                        statuses: list[JobStatus] | None = None) -> list[ImageJob]:
        query = sa.select(_J)
        if image_id is not None:
            query = query.where(_J.c.image_id == image_id)
        if host_id is not None:
            query = query.where(_J.c.host_id == host_id)
        if statuses is not None:
            query = query.where(_J.c.status.in_([s.value for s in statuses]))
        return [_job(r) for r in await self._rows(query.order_by(_J.c.created_at, _J.c.id))]
