"""The image catalog and its jobs in memory (tests, ``persistence=memory``)."""

from __future__ import annotations

import copy

from remotegpu.domain.images.models import CatalogImage, ImageJob, ImageStatus, JobStatus
from remotegpu.domain.shared.errors import Conflict


class InMemoryImageStore:
    def __init__(self) -> None:
        self._images: dict[str, CatalogImage] = {}
        self._jobs: dict[str, ImageJob] = {}
        self._host_images: dict[str, set[str]] = {}

    async def add_image(self, image: CatalogImage) -> None:
        if any(i.reference == image.reference for i in self._images.values()):
            raise Conflict(f"{image.reference} is in the catalog already", code="image_exists")
        self._images[image.id] = copy.deepcopy(image)

    async def get_image(self, image_id: str) -> CatalogImage | None:
        image = self._images.get(image_id)
        return copy.deepcopy(image) if image else None

    async def find_image(self, reference: str) -> CatalogImage | None:
        for image in self._images.values():
            if image.reference == reference:
                return copy.deepcopy(image)
        return None

    async def list_images(self, workspace_ids: list[str] | None) -> list[CatalogImage]:
        out = [i for i in self._images.values()
               if workspace_ids is None or i.workspace_id is None or i.workspace_id in workspace_ids]
        return [copy.deepcopy(i) for i in sorted(out, key=lambda i: (i.created_at, i.id), reverse=True)]

    async def update_image(self, image: CatalogImage) -> None:
        if image.id in self._images:
            self._images[image.id] = copy.deepcopy(image)

    async def delete_image(self, image_id: str) -> None:
        self._images.pop(image_id, None)
        for job_id in [j.id for j in self._jobs.values() if j.image_id == image_id]:
            del self._jobs[job_id]

    async def workspace_image_bytes(self, workspace_id: str) -> int:
        return sum(i.size_bytes for i in self._images.values()
                   if i.workspace_id == workspace_id and i.status is not ImageStatus.FAILED)

    async def set_host_images(self, host_id: str, references: list[str]) -> None:
        self._host_images[host_id] = set(references)

    async def hosts_with_image(self, reference: str) -> set[str]:
        return {h for h, refs in self._host_images.items() if reference in refs}

    async def add_job(self, job: ImageJob) -> None:
        self._jobs[job.id] = copy.deepcopy(job)

    async def get_job(self, job_id: str) -> ImageJob | None:
        job = self._jobs.get(job_id)
        return copy.deepcopy(job) if job else None

    async def update_job(self, job: ImageJob) -> None:
        if job.id in self._jobs:
            self._jobs[job.id] = copy.deepcopy(job)

    async def list_jobs(self, *, image_id: str | None = None, host_id: str | None = None,
                        statuses: list[JobStatus] | None = None) -> list[ImageJob]:
        out = [j for j in self._jobs.values()
               if (image_id is None or j.image_id == image_id) and (host_id is None or j.host_id == host_id)
               and (statuses is None or j.status in statuses)]
        return [copy.deepcopy(j) for j in sorted(out, key=lambda j: (j.created_at, j.id))]
