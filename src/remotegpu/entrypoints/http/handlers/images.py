"""The image catalog (issue 15): list, show, publish, edit, delete; save an environment
as an image; builds; the jobs behind the last two."""

from __future__ import annotations

from remotegpu.domain.images.models import CatalogImage, ImageJob
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.images import (
    BuildIn,
    ImageJobOut,
    ImageListQuery,
    ImageOut,
    ImagePatchIn,
    ImagePublishIn,
    ImageWithJobOut,
    SaveImageIn,
)

TAGS = ["images"]
ONE = "/api/v1/images/{image_id}"
JOB = "/api/v1/image-jobs/{job_id}"


def image_out(i: CatalogImage) -> ImageOut:
    return ImageOut(
        id=i.id, name=i.name, tag=i.tag, reference=i.reference, visibility=i.visibility, workspace_id=i.workspace_id,
        status=i.status, source=i.source, digest=i.digest, size_bytes=i.size_bytes, layers=i.layers,
        description=i.description, metadata=i.metadata, preload=i.preload, error=i.error, created_by=i.created_by,
        created_at=i.created_at, updated_at=i.updated_at,
    )


def job_out(j: ImageJob) -> ImageJobOut:
    return ImageJobOut(
        id=j.id, kind=j.kind, image_id=j.image_id, workspace_id=j.workspace_id, status=j.status, target=j.target,
        env_id=j.env_id, base_reference=j.base_reference, host_id=j.host_id, progress=j.progress, error=j.error,
        log=j.log, log_offset=j.log_dropped, timeout_seconds=j.timeout_seconds, cancel_requested=j.cancel_requested,
        created_by=j.created_by, created_at=j.created_at, started_at=j.started_at, finished_at=j.finished_at,
    )


@api.get("/api/v1/images", query=ImageListQuery, response=Page[ImageOut], tags=TAGS, errors=[401, 404, 422])
async def list_images(call: Call) -> Page[ImageOut]:
    """The catalog: platform images and the images of the caller's workspaces (or of one)."""
    q: ImageListQuery = call.query
    images = await call.container.image_service().list(
        call.user, workspace_id=q.workspace_id, visibility=q.visibility, search=q.q, status=q.status,
    )
    return Page[ImageOut](items=[image_out(i) for i in images], total=len(images))


@api.post("/api/v1/images", body=ImagePublishIn, response=ImageOut, status=201, tags=TAGS, errors=[401, 403, 409, 422])
async def publish_image(call: Call) -> ImageOut:
    """Publish a platform image (platform admins): an image already in a registry."""
    b: ImagePublishIn = call.body
    image = await call.container.image_service().publish(
        call.user, name=b.name, tag=b.tag, reference=b.reference, description=b.description, metadata=b.metadata,
        preload=b.preload,
    )
    return image_out(image)


@api.get(ONE, response=ImageOut, tags=TAGS, errors=[401, 404])
async def get_image(call: Call) -> ImageOut:
    """One image (another workspace's answers 404)."""
    return image_out(await call.container.image_service().get(call.user, call.path("image_id")))


@api.patch(ONE, body=ImagePatchIn, response=ImageOut, tags=TAGS, errors=[401, 403, 404, 422])
async def update_image(call: Call) -> ImageOut:
    """Description and metadata (its maker, workspace admins; platform images: platform admins)."""
    b: ImagePatchIn = call.body
    image = await call.container.image_service().update(
        call.user, call.path("image_id"), description=b.description, metadata=b.metadata, preload=b.preload,
    )
    return image_out(image)


@api.delete(ONE, status=204, tags=TAGS, errors=[401, 403, 404, 409])
async def delete_image(call: Call) -> None:
    """Delete an image: 409 `image_in_use` while an environment uses it. Its registry
    manifest goes now, its blobs at the registry's next garbage collection."""
    await call.container.image_service().delete(call.user, call.path("image_id"))


@api.get(ONE + "/jobs", response=Page[ImageJobOut], tags=TAGS, errors=[401, 404])
async def list_image_jobs(call: Call) -> Page[ImageJobOut]:
    """The save or build jobs that made (or are making) this image."""
    jobs = await call.container.image_service().jobs(call.user, call.path("image_id"))
    return Page[ImageJobOut](items=[job_out(j) for j in jobs], total=len(jobs))


@api.post("/api/v1/environments/{environment_id}/save-image", body=SaveImageIn, response=ImageWithJobOut, status=202,
          tags=TAGS, errors=[401, 403, 404, 409, 422])
async def save_environment_image(call: Call) -> ImageWithJobOut:
    """Save a running or stopped environment as a workspace image (its system disk, flattened,
    without /root/workspace, mounts, shell history, SSH keys, Jupyter tokens); the job shows progress."""
    b: SaveImageIn = call.body
    image, job = await call.container.image_service().save(
        call.user, call.path("environment_id"), name=b.name, tag=b.tag, description=b.description, metadata=b.metadata,
    )
    return ImageWithJobOut(image=image_out(image), job=job_out(job))


@api.post("/api/v1/images/builds", body=BuildIn, response=ImageWithJobOut, status=202, tags=TAGS,
          errors=[401, 403, 404, 409, 422])
async def build_image(call: Call) -> ImageWithJobOut:
    """Queue a build of a Dockerfile FROM a catalog image (workspace members); a host's agent builds and pushes it."""
    b: BuildIn = call.body
    image, job = await call.container.image_service().build(
        call.user, b.workspace_id, name=b.name, tag=b.tag, dockerfile=b.dockerfile, context=b.context,
        description=b.description, metadata=b.metadata, timeout_seconds=b.timeout_seconds, cpu_cores=b.cpu_cores,
        memory_gib=b.memory_gib,
    )
    return ImageWithJobOut(image=image_out(image), job=job_out(job))


@api.get(JOB, response=ImageJobOut, tags=TAGS, errors=[401, 404])
async def get_image_job(call: Call) -> ImageJobOut:
    """A save or build: status, progress and log (poll it for the live log)."""
    return job_out(await call.container.image_service().job(call.user, call.path("job_id")))


@api.post(JOB + "/cancel", response=ImageJobOut, tags=TAGS, errors=[401, 403, 404])
async def cancel_image_job(call: Call) -> ImageJobOut:
    """Cancel a queued or running save or build (its image turns failed)."""
    return job_out(await call.container.image_service().cancel(call.user, call.path("job_id")))
