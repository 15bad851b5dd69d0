from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from remotegpu.domain.images.models import ImageSource, ImageStatus, JobKind, JobStatus, Visibility
from remotegpu.entrypoints.http.schemas.common import Strict

_METADATA = "what it contains, e.g. {\"os\": \"Debian 12\", \"python\": \"3.11\", \"cuda\": \"12.4\", \"pytorch\": \"2.5\"}"


class ImageListQuery(Strict):
    workspace_id: str | None = Field(None, min_length=1, max_length=36, description="platform images and this workspace's")
    visibility: Visibility | None = None
    status: ImageStatus | None = None
    q: str = Field("", max_length=100, description="in name, tag, description and metadata (keys and values)")


class ImagePublishIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    tag: str = Field("latest", min_length=1, max_length=128)
    reference: str | None = Field(None, min_length=1, max_length=255,
                                  description="what Docker pulls; default: name:tag in the platform's registry")
    description: str = Field("", max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict, description=_METADATA)
    preload: bool = Field(False, description="hosts pull it ahead of time")


class ImagePatchIn(Strict):
    description: str | None = Field(None, max_length=1000)
    metadata: dict[str, str] | None = None
    preload: bool | None = Field(None, description="platform admins only")


class SaveImageIn(Strict):
    name: str = Field(min_length=1, max_length=100, description="lower-case, e.g. 'my-torch'")
    tag: str = Field("latest", min_length=1, max_length=128)
    description: str = Field("", max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict, description=_METADATA + "; the base image's are inherited")


class BuildIn(Strict):
    workspace_id: str = Field(min_length=1, max_length=36)
    name: str = Field(min_length=1, max_length=100)
    tag: str = Field("latest", min_length=1, max_length=128)
    dockerfile: str = Field(min_length=1, max_length=65536, description="FROM a catalog image's reference (no other base)")
    context: str = Field("", max_length=12_000_000, description="optional: base64 of a tar with the files COPY needs")
    description: str = Field("", max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict, description=_METADATA)
    timeout_seconds: int = Field(3600, ge=60, le=21600)
    cpu_cores: int = Field(2, ge=1, le=64, description="limits of the build, counted against the workspace's quota while it runs")
    memory_gib: int = Field(4, ge=1, le=512)


class ImageOut(BaseModel):
    id: str
    name: str
    tag: str
    reference: str = Field(description="what environments run (`image` of an environment create)")
    visibility: Visibility
    workspace_id: str | None
    status: ImageStatus
    source: ImageSource
    digest: str
    size_bytes: int
    layers: int
    description: str
    metadata: dict[str, str]
    preload: bool
    error: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class ImageJobOut(BaseModel):
    id: str
    kind: JobKind
    image_id: str
    workspace_id: str | None
    status: JobStatus
    target: str
    env_id: str | None
    base_reference: str
    host_id: str | None
    progress: str = Field(description="one line: where it is now")
    error: str
    log: str = Field(description="the build/save log (its end, at most 200,000 characters)")
    log_offset: int = Field(description="characters of log before `log` (cut from its front)")
    timeout_seconds: int
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImageWithJobOut(BaseModel):
    image: ImageOut
    job: ImageJobOut


class RegistryTokenQuery(BaseModel):
    """Docker's token request (registry v2 token auth). Docker also sends ``client_id``
    and ``offline_token``: ignored."""

    model_config = ConfigDict(extra="ignore")
    service: str = Field("", max_length=200, description="the registry's `auth: token: service`")
    scope: str = Field("", max_length=2000, description="`repository:NAME:pull[,push]`; may be repeated")
    account: str = Field("", max_length=200, description="the host's id (the Basic user name)")


class RegistryTokenOut(BaseModel):
    token: str = Field(description="a JWT the registry checks against its rootcertbundle")
    access_token: str = Field(description="the same token (OAuth 2 clients read this)")
    expires_in: int = Field(description="seconds")
    issued_at: datetime
