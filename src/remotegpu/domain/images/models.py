"""The image catalog: what environments may start from, and the jobs that make images.

A ``CatalogImage`` is a Docker reference the platform vouches for, with what it contains
(OS, Python, CUDA, frameworks: free ``metadata``), its size and digest once known. It is
either a *platform* image (published by platform admins, seen by everyone) or a
*workspace* image (made by saving an environment or by a build, seen by that workspace's
members only: to anybody else it does not exist).

An ``ImageJob`` is work a host's agent does for the catalog: ``save`` (an environment's
system disk becomes an image) or ``build`` (a Dockerfile ``FROM`` a catalog image). Jobs
are queued, run by one host, cancellable and time-limited; their log is kept (bounded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import InvalidInput

NAME_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*){0,2}")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_NAME = 100
MAX_DESCRIPTION = 1000
MAX_METADATA_ITEMS = 30
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 200
#: Keys the console shows in columns (anything else is shown as extra metadata).
KNOWN_METADATA = ("os", "python", "cuda", "cudnn", "pytorch", "tensorflow", "jax", "frameworks")
#: A job's log is kept up to this many characters (the end is kept: what failed).
MAX_LOG_CHARS = 200_000
MAX_DOCKERFILE = 64 * 1024
MAX_CONTEXT_BYTES = 8 * 1024 * 1024  # base64-decoded size of the optional context (a tar)
DEFAULT_BUILD_TIMEOUT_SECONDS = 3600
MAX_BUILD_TIMEOUT_SECONDS = 6 * 3600
SAVE_TIMEOUT_SECONDS = 3 * 3600


class ImageVisibility(str, Enum):
    PLATFORM = "platform"
    WORKSPACE = "workspace"


# Class names apart from storage's Visibility and workloads' JobStatus: OpenAPI
# components are keyed by class name.
Visibility = ImageVisibility


class ImageStatus(str, Enum):
    PENDING = "pending"  # a save or build is making it
    READY = "ready"  # in the registry (or, seeded, on the hosts): environments may start from it
    FAILED = "failed"  # the job failed or was cancelled; kept so users see why, deletable


class ImageSource(str, Enum):
    SEED = "seed"  # the platform's base image, entered at start-up
    PUBLISH = "publish"  # an admin entered an existing reference
    SAVE = "save"  # an environment saved as an image
    BUILD = "build"  # a Dockerfile built by an agent


class JobKind(str, Enum):
    SAVE = "save"
    BUILD = "build"


class ImageJobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


JobStatus = ImageJobStatus


@dataclass
class CatalogImage:
    id: str
    name: str  # e.g. "pytorch" or "team/tools"
    tag: str
    reference: str  # what Docker pulls: "<registry>/<path>:<tag>" (or a local name, seeded)
    visibility: Visibility
    workspace_id: str | None  # set for workspace images
    created_by: str | None  # the user (None: the platform itself)
    created_at: datetime
    updated_at: datetime
    status: ImageStatus = ImageStatus.READY
    source: ImageSource = ImageSource.PUBLISH
    digest: str = ""  # the registry manifest digest, once pushed
    size_bytes: int = 0  # uncompressed size on a host (what storage_gib counts)
    layers: int = 0
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    preload: bool = False  # hosts pull it ahead of time
    error: str = ""  # why it failed

    @property
    def display(self) -> str:
        return f"{self.name}:{self.tag}"

    def visible_to(self, workspace_ids: set[str]) -> bool:
        return self.visibility is Visibility.PLATFORM or self.workspace_id in workspace_ids


@dataclass
class ImageJob:
    id: str
    kind: JobKind
    image_id: str  # the catalog entry it makes
    workspace_id: str | None
    created_by: str
    created_at: datetime
    target: str  # the reference it pushes
    host_id: str | None = None  # who runs it (a save: the environment's host)
    status: JobStatus = JobStatus.QUEUED
    env_id: str | None = None  # save
    dockerfile: str = ""  # build
    context: str = ""  # build: base64 of a tar (optional)
    base_reference: str = ""  # build: the catalog image it starts FROM
    timeout_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS
    cpu_cores: int = 2  # build: limits of the build (counted against the quota while it runs)
    memory_gib: int = 4
    log: str = ""
    log_dropped: int = 0  # characters cut from the front of ``log`` (it keeps the end)
    error: str = ""
    progress: str = ""  # one line: where it is now ("exporting 1.2 GiB", "pushing 40%")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False

    @property
    def log_received(self) -> int:
        """Characters of log received in all (the agent sends from this offset on)."""
        return self.log_dropped + len(self.log)

    def append_log(self, text: str) -> None:
        if text:
            whole = self.log + text
            cut = max(0, len(whole) - MAX_LOG_CHARS)
            self.log, self.log_dropped = whole[cut:], self.log_dropped + cut


def check_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            "name: lower-case letters, digits and . _ - separators, up to three /-separated parts (e.g. 'pytorch' or 'team/tools')",
            code="invalid_image_name", details={"field": "name"},
        )
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise InvalidInput("tag: letters, digits, _ . - (at most 128, not starting with . or -)",
                           code="invalid_image_tag", details={"field": "tag"})
    return tag


def check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters", details={"field": "description"})
    return description


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_ITEMS:
        raise InvalidInput(f"metadata: at most {MAX_METADATA_ITEMS} entries", details={"field": "metadata"})
    out = {}
    for key, value in metadata.items():
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,%d}" % (MAX_METADATA_KEY - 1), key):
            raise InvalidInput(f"metadata key {key!r}: lower-case letters, digits, _ . -", details={"field": "metadata"})
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE or any(ord(c) < 32 for c in value):
            raise InvalidInput(f"metadata {key}: a one-line string of at most {MAX_METADATA_VALUE} characters",
                               details={"field": "metadata"})
        out[key] = value
    return out


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)


def dockerfile_bases(dockerfile: str) -> list[str]:
    """The images a Dockerfile starts from (``FROM x`` lines), stage names excluded
    (``FROM builder`` after ``FROM x AS builder`` is not an image). Line continuations
    and ``ARG`` in ``FROM`` are refused: the base must be literal to be checked."""
    if len(dockerfile) > MAX_DOCKERFILE:
        raise InvalidInput(f"dockerfile: at most {MAX_DOCKERFILE} bytes", details={"field": "dockerfile"})
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.splitlines():
        if not re.match(r"^\s*FROM\b", line, re.IGNORECASE):
            continue
        match = _FROM.match(line)
        if match is None or "$" in line:
            raise InvalidInput(f"dockerfile: cannot read this FROM line: {line.strip()[:100]!r} (write the base image literally)",
                               code="invalid_dockerfile", details={"field": "dockerfile"})
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages:
            bases.append(image)
        if stage:
            stages.add(stage.lower())
    if not bases:
        raise InvalidInput("dockerfile: it must start FROM a catalog image", code="invalid_dockerfile",
                           details={"field": "dockerfile"})
    return bases


#: What a saved image never carries (paths inside the container). Data: the workspace
#: volume (also never in ``docker export``), mounts; secrets: shell and tool history,
#: SSH keys (the platform's and users' authorized_keys, host keys: regenerated at the next
#: start), Jupyter's runtime files and tokens, the variables exported to SSH sessions
#: (/etc/environment holds the environment's variables, secret ones included).
SAVE_EXCLUDED_PREFIXES = (
    "root/workspace/",
    "root/.ssh/",
    "root/.local/share/jupyter/runtime/",
    "root/.jupyter/runtime/",
    "root/.cache/",
    "etc/ssh/ssh_host_",
    "run/",
    "tmp/",
    "var/tmp/",
    "proc/",
    "sys/",
    "dev/",
)
SAVE_EXCLUDED_NAMES = (
    ".bash_history", ".zsh_history", ".python_history", ".lesshst", ".viminfo", ".wget-hsts",
    ".node_repl_history", ".mysql_history", ".psql_history", ".sqlite_history", ".rediscli_history",
)
#: Files kept but emptied (they must exist; their content is this environment's).
SAVE_EMPTIED = ("etc/environment", "etc/hostname", "etc/hosts", "etc/resolv.conf")


def excluded_from_save(path: str) -> bool:
    """Whether a path of the container's filesystem (as in ``docker export``, no leading
    '/') stays out of a saved image. Directories themselves stay (empty), their content goes."""
    path = (path[2:] if path.startswith("./") else path).lstrip("/")
    if any(path.startswith(p) for p in SAVE_EXCLUDED_PREFIXES):
        return True
    base = path.rsplit("/", 1)[-1]
    if base in SAVE_EXCLUDED_NAMES:
        return True
    return bool(re.fullmatch(r"root/\.jupyter/.*token.*|home/[^/]+/\.ssh/.+|etc/ssh/ssh_host_.*", path))
