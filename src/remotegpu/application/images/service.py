"""Image catalog use cases: list, show, publish, edit, delete; save an environment as an
image; build from a Dockerfile; the jobs that do the last two (run by hosts' agents).

Who may do what: everyone signed in sees platform images; a workspace's viewers see
its images, members save and build into it, admins (and the image's maker) edit and
delete its images; platform images are published, edited and deleted by platform
admins only. To anybody outside the workspace a workspace image does not exist (404),
also when named in an environment create (``resolve``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field

from remotegpu.application.environments.access import load_operable
from remotegpu.application.images.ports import ImageRegistry, ImageStore, ManifestInfo, NoRegistry
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.workspaces.quotas import WorkspacePolicy
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.environments.images import ImagePolicy
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.models import HostStatus
from remotegpu.domain.identity.models import User
from remotegpu.domain.images.models import (
    DEFAULT_BUILD_TIMEOUT_SECONDS,
    MAX_BUILD_TIMEOUT_SECONDS,
    MAX_CONTEXT_BYTES,
    SAVE_TIMEOUT_SECONDS,
    CatalogImage,
    ImageJob,
    ImageSource,
    ImageStatus,
    JobKind,
    JobStatus,
    Visibility,
    check_description,
    check_metadata,
    check_name,
    check_tag,
    dockerfile_bases,
)
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from remotegpu.domain.shared.ids import new_id
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)

GIB = 1024 ** 3
CATALOG_CACHE_SECONDS = 15.0
#: Environments in these states hold on to their image (delete is refused).
_USING = [s for s in EnvStatus if s is not EnvStatus.DELETED]


def _check_reference_length(reference: str) -> None:
    if len(reference) > 255:
        raise InvalidInput("name and tag make a reference longer than 255 characters: shorten them",
                           code="invalid_image_name", details={"field": "name"})


@dataclass(frozen=True)
class JobUpdate:
    """What an agent reports about one job (see ``agent_protocol.ImageJobReport``)."""

    job_id: str
    status: str  # running | succeeded | failed | cancelled
    log_from: int = 0
    log: str = ""
    progress: str = ""
    digest: str = ""
    size_bytes: int = 0
    layers: int = 0
    error: str = ""


@dataclass
class ImageService:
    uow: UnitOfWorkFactory
    store: ImageStore
    clock: Clock
    registry: ImageRegistry = field(default_factory=NoRegistry)
    namespace: str = "remotegpu"  # path prefix of everything the platform pushes
    # The workspaces' quotas: images count against storage_gib, builds against CPU and memory.
    quotas: WorkspacePolicy | None = None
    _catalog_cache: tuple | None = field(default=None, init=False, repr=False)

    # --- reading ------------------------------------------------------------------------

    async def _workspace_ids(self, actor: User) -> set[str]:
        async with self.uow() as uow:
            rows, _ = await uow.workspaces.list_for_user(actor.id, limit=10_000, offset=0)
        return {ws.id for ws, _m in rows}

    async def _visible(self, actor: User, image_id: str) -> CatalogImage:
        image = await self.store.get_image(image_id)
        if image is None:
            raise NotFound("image not found")
        if image.visibility is Visibility.WORKSPACE and not actor.is_admin:
            try:
                async with self.uow() as uow:
                    await authorize(uow, actor, image.workspace_id or "", Role.VIEWER)
            except NotFound:
                raise NotFound("image not found") from None
        return image

    async def list(self, actor: User, *, workspace_id: str | None = None, visibility: Visibility | None = None,
                   search: str = "", status: ImageStatus | None = None) -> list[CatalogImage]:
        """Platform images and those of the caller's workspaces (one workspace's with
        ``workspace_id``), filtered; newest first."""
        if workspace_id is not None:
            async with self.uow() as uow:
                await authorize(uow, actor, workspace_id, Role.VIEWER)
            ids = [workspace_id]
        else:
            ids = sorted(await self._workspace_ids(actor))
        images = await self.store.list_images(ids)
        if workspace_id is not None:
            images = [i for i in images if i.visibility is Visibility.PLATFORM or i.workspace_id == workspace_id]
        if visibility is not None:
            images = [i for i in images if i.visibility is visibility]
        if status is not None:
            images = [i for i in images if i.status is status]
        if search:
            needle = search.lower()
            images = [i for i in images if needle in i.name.lower() or needle in i.description.lower()
                      or needle in i.tag.lower() or any(needle in f"{k} {v}".lower() for k, v in i.metadata.items())]
        return sorted(images, key=lambda i: (i.visibility is not Visibility.PLATFORM, i.name, i.tag))

    async def get(self, actor: User, image_id: str) -> CatalogImage:
        return await self._visible(actor, image_id)

    async def jobs(self, actor: User, image_id: str) -> list[ImageJob]:
        image = await self._visible(actor, image_id)
        return await self.store.list_jobs(image_id=image.id)

    async def job(self, actor: User, job_id: str) -> ImageJob:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound("image job not found")
        try:
            await self._visible(actor, job.image_id)
        except NotFound:
            raise NotFound("image job not found") from None
        return job

    async def resolve(self, actor: User, workspace_id: str, *, image_id: str | None = None,
                      reference: str | None = None) -> str | None:
        """The reference an environment of ``workspace_id`` starts from: the catalog image
        ``image_id`` (NotFound unless ready and visible to that workspace), or a catalog
        entry matching ``reference`` (another workspace's answers NotFound too). None:
        ``reference`` is not in the catalog (the allowed-images rule then decides)."""
        if image_id is not None:
            image = await self.store.get_image(image_id)
        elif reference is not None:
            image = await self.store.find_image(reference)
            if image is None:
                return None
        else:
            return None
        if image is None or (image.visibility is Visibility.WORKSPACE and image.workspace_id != workspace_id):
            raise NotFound("image not found", details={"field": "image_id" if image_id else "image"})
        if image.status is not ImageStatus.READY:
            raise Conflict(f"image {image.display} is {image.status.value}, not ready", code="image_not_ready")
        return image.reference

    # --- writing ------------------------------------------------------------------------

    async def _may_manage(self, actor: User, image: CatalogImage) -> None:
        if actor.is_admin:
            return
        if image.visibility is Visibility.PLATFORM:
            raise PermissionDenied("only platform admins manage platform images", code="admin_required")
        async with self.uow() as uow:
            membership = await authorize(uow, actor, image.workspace_id or "", Role.MEMBER)
        if image.created_by != actor.id and not membership.role.at_least(Role.ADMIN):
            raise PermissionDenied("only the image's maker or a workspace admin can do this", code="not_image_owner")

    def _path(self, visibility: Visibility, workspace_id: str | None, name: str) -> str:
        scope = "platform" if visibility is Visibility.PLATFORM else f"ws-{workspace_id}"
        return f"{self.namespace}/{scope}/{name}"

    async def publish(self, actor: User, *, name: str, tag: str, reference: str | None = None,
                      description: str = "", metadata: dict[str, str] | None = None, preload: bool = False) -> CatalogImage:
        """A platform image (platform admins): an existing reference (default: where the
        registry would hold ``name:tag``); its digest and size are read from the registry."""
        if not actor.is_admin:
            raise PermissionDenied("only platform admins publish platform images", code="admin_required")
        name, tag = check_name(name), check_tag(tag)
        reference = reference or self.registry.reference(self._path(Visibility.PLATFORM, None, name), tag)
        _check_reference_length(reference)
        ImagePolicy(("*",)).check(reference)  # well formed
        now = self.clock.now()
        image = CatalogImage(
            id=new_id(), name=name, tag=tag, reference=reference, visibility=Visibility.PLATFORM, workspace_id=None,
            created_by=actor.id, created_at=now, updated_at=now, source=ImageSource.PUBLISH,
            description=check_description(description), metadata=check_metadata(metadata or {}), preload=preload,
        )
        info = await self._manifest(reference)
        if info is not None:
            image.digest, image.layers = info.digest, info.layers
            image.size_bytes = image.size_bytes or info.compressed_bytes
        await self.store.add_image(image)
        return image

    async def _manifest(self, reference: str) -> ManifestInfo | None:
        if not self.registry.owns(reference):
            return None
        try:
            return await self.registry.manifest(reference)
        except Exception as exc:  # noqa: BLE001 - the registry being down does not stop a publish
            log.warning("registry: could not read %s: %s", reference, exc)
            return None

    async def seed(self, reference: str, *, name: str = "base", tag: str = "latest", description: str = "",
                   metadata: dict[str, str] | None = None, size_bytes: int = 0, digest: str = "",
                   preload: bool = True) -> CatalogImage:
        """The platform's base image enters the catalog (idempotent: an existing entry for
        ``reference`` is kept, its size and digest refreshed when given)."""
        existing = await self.store.find_image(reference)
        now = self.clock.now()
        if existing is not None:
            if (size_bytes and existing.size_bytes != size_bytes) or (digest and existing.digest != digest):
                existing.size_bytes, existing.digest = size_bytes or existing.size_bytes, digest or existing.digest
                existing.updated_at = now
                await self.store.update_image(existing)
            return existing
        image = CatalogImage(
            id=new_id(), name=name, tag=tag, reference=reference, visibility=Visibility.PLATFORM, workspace_id=None,
            created_by=None, created_at=now, updated_at=now, source=ImageSource.SEED, size_bytes=size_bytes,
            digest=digest, description=description or "The platform's base image: SSH, JupyterLab, Python",
            metadata=metadata or {}, preload=preload,
        )
        try:
            await self.store.add_image(image)
        except Conflict:  # another replica seeded it meanwhile
            return await self.store.find_image(reference) or image
        return image

    async def update(self, actor: User, image_id: str, *, description: str | None = None,
                     metadata: dict[str, str] | None = None, preload: bool | None = None) -> CatalogImage:
        image = await self._visible(actor, image_id)
        await self._may_manage(actor, image)
        if description is not None:
            image.description = check_description(description)
        if metadata is not None:
            image.metadata = check_metadata(metadata)
        if preload is not None:
            if not actor.is_admin:
                raise PermissionDenied("only platform admins mark images for preloading", code="admin_required")
            image.preload = preload
        image.updated_at = self.clock.now()
        await self.store.update_image(image)
        return image

    async def delete(self, actor: User, image_id: str) -> None:
        """Refused (409 ``image_in_use``) while an environment that is not deleted uses it
        or a job is making it; removes its manifest from the registry (the blobs go at the
        next garbage collection, see deploy/registry/gc.sh)."""
        image = await self._visible(actor, image_id)
        await self._may_manage(actor, image)
        async with self.uow() as uow:
            users = [e for e in await uow.environments.list_by_status(_USING) if e.image == image.reference]
        if users:
            raise Conflict(f"image {image.display} is used by {len(users)} environment(s); delete them first",
                           code="image_in_use", details={"environments": sorted(e.id for e in users)[:20]})
        active = await self.store.list_jobs(image_id=image.id, statuses=[JobStatus.QUEUED, JobStatus.RUNNING])
        if active:
            raise Conflict("a job is making this image: cancel it first", code="image_job_active")
        if image.source is ImageSource.SEED:
            raise Conflict("the platform's base image cannot be deleted", code="image_is_base")
        if self.registry.owns(image.reference):
            try:
                await self.registry.delete(image.reference)
            except Exception as exc:  # noqa: BLE001 - the catalog entry goes anyway; gc.sh finds orphans
                log.warning("registry: could not delete %s: %s", image.reference, exc)
        await self.store.delete_image(image.id)

    # --- saves and builds ---------------------------------------------------------------

    def _need_registry(self) -> None:
        if not self.registry.address:
            raise Conflict("no image registry is configured on this server (REMOTEGPU_REGISTRY_URL)",
                           code="registry_not_configured")

    async def _pending(self, actor: User, workspace_id: str, name: str, tag: str, description: str,
                       metadata: dict[str, str] | None, source: ImageSource) -> CatalogImage:
        name, tag = check_name(name), check_tag(tag)
        now = self.clock.now()
        reference = self.registry.reference(self._path(Visibility.WORKSPACE, workspace_id, name), tag)
        _check_reference_length(reference)
        existing = await self.store.find_image(reference)
        if existing is not None:
            raise Conflict(f"{name}:{tag} exists in this workspace: pick another tag or delete it first",
                           code="image_exists")
        return CatalogImage(
            id=new_id(), name=name, tag=tag, reference=reference, visibility=Visibility.WORKSPACE,
            workspace_id=workspace_id, created_by=actor.id, created_at=now, updated_at=now, status=ImageStatus.PENDING,
            source=source, description=check_description(description), metadata=check_metadata(metadata or {}),
        )

    async def _check_storage(self, workspace_id: str) -> None:
        """Images count against the workspace's storage quota, with its environments'
        disks: a new save or build is refused once the two together fill it."""
        if self.quotas is None:
            return
        async with self.uow() as uow:
            quota, _custom = await self.quotas.workspace_quota(uow, workspace_id)
            usage = await uow.workspaces.usage(workspace_id)
        if quota.max_storage_gib is None:
            return
        images = await self.store.workspace_image_bytes(workspace_id)
        used = usage.storage_gib * GIB + images
        if used >= quota.max_storage_gib * GIB:
            raise QuotaExceeded(
                f"the workspace's disks and images use {used / GIB:.1f} GiB of its {quota.max_storage_gib} GiB storage quota",
                details={"resource": "storage_gib", "limit": quota.max_storage_gib, "images_gib": round(images / GIB, 1)},
            )

    async def save(self, actor: User, env_id: str, *, name: str, tag: str = "latest", description: str = "",
                   metadata: dict[str, str] | None = None) -> tuple[CatalogImage, ImageJob]:
        """Save an environment (running or stopped, on a host) as a workspace image: its
        host's agent flattens its system disk without data and secrets, pushes it, and the
        image becomes ready (``ImageJob`` shows progress)."""
        async with self.uow() as uow:
            env = await load_operable(uow, actor, env_id)
            host = await uow.hosts.get(env.host_id) if env.host_id else None
        self._need_registry()
        if env.status not in (EnvStatus.RUNNING, EnvStatus.STOPPED) or host is None:
            raise Conflict("only a running or stopped environment can be saved as an image",
                           code="environment_not_savable", details={"status": env.status.value})
        await self._check_storage(env.workspace_id)
        base = await self.store.find_image(env.image)
        inherited = dict(base.metadata) if base is not None else {}
        image = await self._pending(actor, env.workspace_id, name, tag, description,
                                    {**inherited, **(metadata or {})}, ImageSource.SAVE)
        job = ImageJob(
            id=new_id(), kind=JobKind.SAVE, image_id=image.id, workspace_id=env.workspace_id, created_by=actor.id,
            created_at=self.clock.now(), target=image.reference, host_id=host.id, env_id=env.id,
            base_reference=env.image, timeout_seconds=SAVE_TIMEOUT_SECONDS,
        )
        await self.store.add_image(image)
        await self.store.add_job(job)
        return image, job

    async def build(self, actor: User, workspace_id: str, *, name: str, tag: str = "latest", dockerfile: str,
                    context: str = "", description: str = "", metadata: dict[str, str] | None = None,
                    timeout_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS, cpu_cores: int = 2,
                    memory_gib: int = 4) -> tuple[CatalogImage, ImageJob]:
        """Queue a build of ``dockerfile`` (FROM catalog images only) by a host's agent."""
        async with self.uow() as uow:
            await authorize(uow, actor, workspace_id, Role.MEMBER)
            hosts = [h for h in await uow.hosts.list()
                     if h.status is HostStatus.READY and h.runtime == "docker" and h.runtime_healthy]
        self._need_registry()
        bases = dockerfile_bases(dockerfile)
        base_reference = ""
        for base in bases:
            found = await self.store.find_image(base)
            if found is None or found.status is not ImageStatus.READY or (
                found.visibility is Visibility.WORKSPACE and found.workspace_id != workspace_id
            ):
                raise InvalidInput(f"FROM {base}: builds start from catalog images only (use its reference)",
                                   code="base_not_in_catalog", details={"field": "dockerfile", "image": base})
            base_reference = base_reference or found.reference
        if context:
            try:
                raw = base64.b64decode(context, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("context: base64 of a tar archive", details={"field": "context"}) from None
            if len(raw) > MAX_CONTEXT_BYTES:
                raise InvalidInput(f"context: at most {MAX_CONTEXT_BYTES // (1024 * 1024)} MiB", details={"field": "context"})
        if not 60 <= timeout_seconds <= MAX_BUILD_TIMEOUT_SECONDS:
            raise InvalidInput(f"timeout_seconds: 60 to {MAX_BUILD_TIMEOUT_SECONDS}", details={"field": "timeout_seconds"})
        if not hosts:
            raise Conflict("no host can build images now (a ready host with the Docker runtime is needed)",
                           code="no_build_host")
        await self._check_storage(workspace_id)
        await self._check_build_quota(workspace_id, cpu_cores, memory_gib)
        busy = {h.id: 0 for h in hosts}
        for running in await self.store.list_jobs(statuses=[JobStatus.QUEUED, JobStatus.RUNNING]):
            if running.host_id in busy:
                busy[running.host_id] += 1
        host = min(hosts, key=lambda h: (busy[h.id], h.name))
        image = await self._pending(actor, workspace_id, name, tag, description, metadata, ImageSource.BUILD)
        job = ImageJob(
            id=new_id(), kind=JobKind.BUILD, image_id=image.id, workspace_id=workspace_id, created_by=actor.id,
            created_at=self.clock.now(), target=image.reference, host_id=host.id, dockerfile=dockerfile,
            context=context, base_reference=base_reference, timeout_seconds=timeout_seconds,
            cpu_cores=cpu_cores, memory_gib=memory_gib,
        )
        await self.store.add_image(image)
        await self.store.add_job(job)
        return image, job

    async def _check_build_quota(self, workspace_id: str, cpu_cores: int, memory_gib: int) -> None:
        """A build's CPU and memory count against the workspace's quota while it runs
        (with its environments' requests)."""
        if not (1 <= cpu_cores <= 64 and 1 <= memory_gib <= 512):
            raise InvalidInput("cpu_cores 1–64, memory_gib 1–512", details={"field": "cpu_cores"})
        if self.quotas is None:
            return
        async with self.uow() as uow:
            quota, _custom = await self.quotas.workspace_quota(uow, workspace_id)
            usage = await uow.workspaces.usage(workspace_id)
        building = [j for j in await self.store.list_jobs(statuses=[JobStatus.QUEUED, JobStatus.RUNNING])
                    if j.kind is JobKind.BUILD and j.workspace_id == workspace_id]
        cpu = usage.cpu_cores + sum(j.cpu_cores for j in building) + cpu_cores
        mem = usage.memory_gib + sum(j.memory_gib for j in building) + memory_gib
        if quota.max_cpu_cores is not None and cpu > quota.max_cpu_cores:
            raise QuotaExceeded("the build's CPU cores would exceed the workspace's quota",
                                details={"resource": "cpu_cores", "limit": quota.max_cpu_cores})
        if quota.max_memory_gib is not None and mem > quota.max_memory_gib:
            raise QuotaExceeded("the build's memory would exceed the workspace's quota",
                                details={"resource": "memory_gib", "limit": quota.max_memory_gib})

    async def cancel(self, actor: User, job_id: str) -> ImageJob:
        job = await self.job(actor, job_id)
        image = await self._visible(actor, job.image_id)
        await self._may_manage(actor, image)
        if job.status.finished:
            return job
        now = self.clock.now()
        if job.status is JobStatus.QUEUED:
            self._finish(job, image, JobStatus.CANCELLED, "cancelled before it started", now)
        else:
            job.cancel_requested = True  # the agent stops it and reports "cancelled"
            job.append_log("\n[remotegpu] cancel requested\n")
        await self.store.update_job(job)
        await self.store.update_image(image)
        return job

    # --- agents -------------------------------------------------------------------------

    async def orders_for(self, host_id: str) -> list[ImageJob]:
        """Jobs this host's agent should run (or stop: ``cancel_requested``); jobs past
        their time limit are failed here."""
        now = self.clock.now()
        out = []
        for job in await self.store.list_jobs(host_id=host_id, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]):
            if job.started_at is not None and (now - job.started_at).total_seconds() > job.timeout_seconds + 60:
                image = await self.store.get_image(job.image_id)
                self._finish(job, image, JobStatus.FAILED, f"timed out after {job.timeout_seconds} s", now)
                await self.store.update_job(job)
                if image is not None:
                    await self.store.update_image(image)
                continue
            out.append(job)
        return out

    async def apply_updates(self, host_id: str, updates: list[JobUpdate]) -> None:
        now = self.clock.now()
        for update in updates:
            job = await self.store.get_job(update.job_id)
            if job is None or job.host_id != host_id or job.status.finished:
                continue  # not this host's, or over: late reports change nothing
            image = await self.store.get_image(job.image_id)
            received = job.log_received
            if update.log and update.log_from <= received < update.log_from + len(update.log):
                # Only what is new: the agent re-sends from the offset of its last reply
                # (one beat behind, or a lost reply), never skips ahead.
                job.append_log(update.log[received - update.log_from:])
            job.progress = update.progress[:300]
            if job.status is JobStatus.QUEUED:
                job.status, job.started_at = JobStatus.RUNNING, now
            if update.status == "succeeded":
                if image is not None:
                    image.digest, image.size_bytes, image.layers = update.digest, update.size_bytes, update.layers
                self._finish(job, image, JobStatus.SUCCEEDED, "", now)
            elif update.status in ("failed", "cancelled"):
                status = JobStatus.CANCELLED if update.status == "cancelled" else JobStatus.FAILED
                self._finish(job, image, status, update.error[:2000] or update.status, now)
            await self.store.update_job(job)
            if image is not None:
                await self.store.update_image(image)

    @staticmethod
    def _finish(job: ImageJob, image: CatalogImage | None, status: JobStatus, error: str, now) -> None:
        job.status, job.finished_at, job.error = status, now, error
        if image is not None:
            image.updated_at = now
            if status is JobStatus.SUCCEEDED:
                image.status, image.error = ImageStatus.READY, ""
            else:
                image.status, image.error = ImageStatus.FAILED, error

    async def workspace_image_gib(self, workspace_id: str) -> int:
        """The workspace's images (ready or pending), in whole GiB rounded up: they count
        against its storage quota with its environments' disks."""
        return -(-await self.store.workspace_image_bytes(workspace_id) // GIB)

    async def catalog_for_agents(self) -> tuple[list[str], list[str]]:
        """(references of ready images, those marked preload): agents say which they
        have, and pull the preload ones ahead of time. Every heartbeat asks: the answer is
        kept for ``CATALOG_CACHE_SECONDS`` (agents look at most every 30 s anyway)."""
        now = self.clock.now()
        if self._catalog_cache is not None and (now - self._catalog_cache[0]).total_seconds() < CATALOG_CACHE_SECONDS:
            return self._catalog_cache[1]
        images = [i for i in await self.store.list_images(None) if i.status is ImageStatus.READY]
        answer = sorted(i.reference for i in images)[:2000], sorted(i.reference for i in images if i.preload)
        self._catalog_cache = (now, answer)
        return answer

    async def note_host_images(self, host_id: str, references: list[str]) -> None:
        """Which catalog images a host has (its agent's report): the scheduler prefers,
        all else equal, a host that has an environment's image."""
        await self.store.set_host_images(host_id, sorted(set(references))[:2000])

    async def hosts_with(self, reference: str) -> set[str]:
        return await self.store.hosts_with_image(reference)

    async def locality(self, references: set[str]) -> dict[str, frozenset[str]]:
        """Reference → the hosts that have it (QueuePass: placement prefers them)."""
        return {ref: frozenset(await self.store.hosts_with_image(ref)) for ref in references}
