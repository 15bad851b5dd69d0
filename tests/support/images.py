"""Image test helpers: seed catalog entries and a job without the API (and a registry)."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.domain.images.models import CatalogImage, ImageJob, ImageSource, ImageStatus, JobKind, JobStatus, Visibility
from remotegpu.domain.shared.ids import new_id


async def seed_images(container, workspace_id: str, owner_id: str) -> tuple[str, str, str]:
    """(a workspace image made by ``owner_id``, a running job of it, a platform image)."""
    store = container.image_store()
    now = datetime.now(timezone.utc)
    tag = new_id()[:8]
    ws_image = CatalogImage(
        id=new_id(), name="team-tools", tag=tag, reference=f"registry.test/remotegpu/ws-{workspace_id}/team-tools:{tag}",
        visibility=Visibility.WORKSPACE, workspace_id=workspace_id, created_by=owner_id, created_at=now, updated_at=now,
        status=ImageStatus.PENDING, source=ImageSource.BUILD,
    )
    platform = CatalogImage(
        id=new_id(), name="pytorch", tag=tag, reference=f"registry.test/remotegpu/platform/pytorch:{tag}",
        visibility=Visibility.PLATFORM, workspace_id=None, created_by=None, created_at=now, updated_at=now,
        metadata={"cuda": "12.4", "pytorch": "2.5"},
    )
    await store.add_image(ws_image)
    await store.add_image(platform)
    job = ImageJob(id=new_id(), kind=JobKind.BUILD, image_id=ws_image.id, workspace_id=workspace_id, created_by=owner_id,
                   created_at=now, target=ws_image.reference, host_id=None, status=JobStatus.RUNNING,
                   dockerfile="FROM remotegpu/base:latest\n")
    await store.add_job(job)
    return ws_image.id, job.id, platform.id
