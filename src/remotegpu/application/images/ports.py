"""What the images use cases need from the outside: a store for the catalog and its
jobs, and the registry images live in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from remotegpu.domain.images.models import CatalogImage, ImageJob, JobStatus


class ImageStore(Protocol):
    """Catalog entries and jobs. Each call is its own short transaction (like the
    webhook store): agents' reports and users' requests update them independently."""

    async def add_image(self, image: CatalogImage) -> None:
        """Conflict("image_exists") when the reference is taken."""
        ...

    async def get_image(self, image_id: str) -> CatalogImage | None: ...

    async def find_image(self, reference: str) -> CatalogImage | None: ...

    async def list_images(self, workspace_ids: list[str] | None) -> list[CatalogImage]:
        """Platform images and the workspace images of ``workspace_ids`` (None: every image)."""
        ...

    async def update_image(self, image: CatalogImage) -> None: ...

    async def delete_image(self, image_id: str) -> None:
        """Also deletes its jobs."""
        ...

    async def workspace_image_bytes(self, workspace_id: str) -> int:
        """Sum of the sizes of the workspace's images (ready or pending)."""
        ...

    async def set_host_images(self, host_id: str, references: list[str]) -> None:
        """The catalog images a host has now (written only when they changed)."""
        ...

    async def hosts_with_image(self, reference: str) -> set[str]: ...

    async def add_job(self, job: ImageJob) -> None: ...

    async def get_job(self, job_id: str) -> ImageJob | None: ...

    async def update_job(self, job: ImageJob) -> None: ...

    async def list_jobs(self, *, image_id: str | None = None, host_id: str | None = None,
                        statuses: list[JobStatus] | None = None) -> list[ImageJob]:
        """Oldest first."""
        ...


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry (never shown to users: the server pushes with the
    push pair; agents get the pull pair, or the push pair where the job pushes)."""

    registry: str
    username: str
    password: str

    def __repr__(self) -> str:
        return f"RegistryAuth(registry={self.registry!r}, username={self.username!r})"


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    compressed_bytes: int
    layers: int


class ImageRegistry(Protocol):
    """The OCI/Docker registry v2 images are pushed to and pulled from."""

    @property
    def address(self) -> str:
        """``host[:port]`` (+ ``/namespace``) prefixing every reference it holds; "" when none is configured."""
        ...

    def reference(self, path: str, tag: str) -> str:
        """The full reference of ``path:tag`` in this registry."""
        ...

    def owns(self, reference: str) -> bool: ...

    def pull_auth(self) -> RegistryAuth | None: ...

    def push_auth(self) -> RegistryAuth | None: ...

    async def manifest(self, reference: str) -> ManifestInfo | None:
        """The pushed manifest (None: not there)."""
        ...

    async def delete(self, reference: str) -> bool:
        """Delete the manifest (its blobs go at the next garbage collection); False when absent."""
        ...


class NoRegistry:
    """No registry configured: images exist on hosts only (the seeded base image);
    saves and builds are refused."""

    address = ""

    def reference(self, path: str, tag: str) -> str:
        return f"{path}:{tag}"

    def owns(self, reference: str) -> bool:
        return False

    def pull_auth(self) -> RegistryAuth | None:
        return None

    def push_auth(self) -> RegistryAuth | None:
        return None

    async def manifest(self, reference: str) -> ManifestInfo | None:
        return None

    async def delete(self, reference: str) -> bool:
        return False
