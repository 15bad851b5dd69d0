from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from remotegpu.domain.storage.models import DEFAULT_PART_SIZE, MAX_FILES_PER_VERSION, SourceKind, Visibility
from remotegpu.entrypoints.http.schemas.common import Strict


class ModelInfoIn(Strict):
    framework: str = Field("", max_length=100, description="e.g. pytorch, tensorflow, jax")
    format: str = Field("", max_length=100, description="e.g. safetensors, onnx, gguf")
    task: str = Field("", max_length=100, description="e.g. text-generation")
    base_model: str = Field("", max_length=300)
    metrics: dict[str, Any] = Field(default_factory=dict, max_length=100, description="free key/values")


class ModelInfoOut(BaseModel):
    framework: str
    format: str
    task: str
    base_model: str
    metrics: dict[str, Any]


class RepositoryIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    name: str = Field(min_length=1, max_length=64, description="lowercase letters, digits, '.', '_', '-'")
    description: str = Field("", max_length=2000)
    visibility: Visibility = Field(Visibility.PRIVATE, description="public: platform administrators only")
    model: ModelInfoIn | None = Field(None, description="models only")


class RepositoryPatchIn(Strict):
    description: str | None = Field(None, max_length=2000)
    visibility: Visibility | None = Field(None, description="platform administrators only")
    model: ModelInfoIn | None = None


class RepositoryListQuery(Strict):
    workspace_id: str | None = Field(None, min_length=1, max_length=36, description="omitted: the public shelf")
    public: bool = Field(True, description="with a workspace: also list the public ones")


class RepositoryOut(BaseModel):
    id: str
    workspace_id: str
    kind: str
    name: str
    description: str
    visibility: Visibility
    tags: dict[str, int]
    model: ModelInfoOut | None
    latest_version: int | None = None
    size_bytes: int = Field(0, description="distinct blobs of all its versions (each counted once)")
    created_at: datetime
    updated_at: datetime


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str


class SourceIn(Strict):
    kind: SourceKind = Field(description="environment or job (a training job)")
    id: str = Field(min_length=1, max_length=36)


class SourceOut(BaseModel):
    kind: SourceKind
    id: str


class VersionOut(BaseModel):
    number: int
    message: str
    file_count: int
    size_bytes: int
    created_by: str
    created_at: datetime
    tags: list[str]
    source: SourceOut | None = Field(None, description="the environment or training job that made it; null: uploaded by a person")


class VersionDetailOut(VersionOut):
    files: list[FileOut]


class ChangedFileOut(BaseModel):
    path: str
    before: FileOut
    after: FileOut


class DiffQuery(Strict):
    from_: str = Field(alias="from", min_length=1, max_length=64, description="version number, tag or 'latest'")
    to: str = Field(min_length=1, max_length=64)


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    added: list[FileOut]
    removed: list[FileOut]
    changed: list[ChangedFileOut]
    unchanged: int


class TagIn(Strict):
    version: str = Field(min_length=1, max_length=64, description="version number, tag or 'latest'")


class FileIn(Strict):
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)


class UploadIn(Strict):
    files: list[FileIn] = Field(min_length=1, max_length=MAX_FILES_PER_VERSION)
    message: str = Field("", max_length=2000)
    tag: str | None = Field(None, max_length=64, description="a tag to point at the version once committed")
    part_size: int = Field(DEFAULT_PART_SIZE, description="8-64 MiB")
    source: SourceIn | None = Field(None, description="the environment or training job (of this workspace) that made the version")


class PendingFileOut(BaseModel):
    sha256: str
    size: int
    part_count: int
    verified: bool
    received_parts: list[int] = Field(description="parts the platform has recorded (resume: send the others)")


class UploadOut(BaseModel):
    id: str
    repository_id: str
    part_size: int
    presigned: bool = Field(description="true: parts go straight to the object store by presigned URL (part-urls)")
    file_count: int
    pending: list[PendingFileOut] = Field(description="blobs the platform does not have yet; the others are already stored")
    created_at: datetime
    updated_at: datetime


class PartUrlsIn(Strict):
    numbers: list[int] = Field(min_length=1, max_length=1000)


class PartUrlsOut(BaseModel):
    presigned: bool
    urls: dict[int, str]


class PartOut(BaseModel):
    number: int
    etag: str


class PartRefIn(Strict):
    number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=200)


class CompleteFileIn(Strict):
    parts: list[PartRefIn] | None = Field(None, max_length=10_000, description="parts sent by presigned URL, with their ETag")


class FileQuery(Strict):
    path: str = Field(min_length=1, max_length=1024)


class FileUrlOut(BaseModel):
    url: str
    presigned: bool
    expires_at: datetime | None


class WholeFilesQuery(Strict):
    # The blobs whose bytes the body brings, in order, comma-separated (each a file of one part).
    sha256: str = Field(min_length=64, max_length=100 * 65)  # at most 100 (a request line stays under 8 KiB)


class WholeFilesOut(BaseModel):
    verified: list[str]


class FileUrlsIn(Strict):
    paths: list[str] = Field(min_length=1, max_length=1000)


class FileUrlItem(BaseModel):
    path: str
    url: str
    presigned: bool


class FileUrlsOut(BaseModel):
    expires_at: datetime | None  # of the presigned URLs
    items: list[FileUrlItem]


class StorageUsageOut(BaseModel):
    workspace_id: str
    used_bytes: int


class SharedDiskIn(Strict):
    size_gib: int = Field(ge=1, le=100_000, description="counts against the workspace's storage_gib")


class SharedDiskOut(BaseModel):
    workspace_id: str
    enabled: bool
    size_gib: int | None
    mount_path: str = Field(description="where it appears in each of the workspace's environments")
    per_host: bool = Field(True, description="one volume per host: it does not follow an environment to another host")
    updated_at: datetime | None


class WorkspaceQuery(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)


class CollectOut(BaseModel):
    blobs_removed: int
    bytes_freed: int
    uploads_cleaned: int
