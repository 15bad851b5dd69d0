"""Which container images environments may run.

An image is a Docker reference (``[registry/]path[:tag][@digest]``). The operator lists
glob patterns (``REMOTEGPU_ALLOWED_IMAGES``, e.g. ``remotegpu/*,registry.lab:5000/ml/*``);
an image is allowed when its full reference, or the reference without tag and digest,
matches one of them. The platform's base image is always allowed.

When the images catalog exists, catalog entries plug in here as further allowed
references (the catalog decides, the patterns remain the operator's escape hatch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from remotegpu.domain.shared.errors import InvalidInput

#: The Docker reference grammar, simplified: lower-case path components separated by
#: '/', an optional registry host[:port] first, an optional tag, an optional digest.
IMAGE_RE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?"
)
MAX_IMAGE_LENGTH = 255


def repository_of(image: str) -> str:
    """``registry/path`` without ``:tag`` and ``@digest``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


@dataclass(frozen=True)
class ImagePolicy:
    patterns: tuple[str, ...]
    default_image: str = ""

    def check(self, image: str) -> None:
        """InvalidInput (422) unless ``image`` is well formed and allowed."""
        if self.default_image and image == self.default_image:
            return  # the operator's own choice (REMOTEGPU_BASE_IMAGE), whatever its spelling
        if len(image) > MAX_IMAGE_LENGTH or not IMAGE_RE.fullmatch(image):
            raise InvalidInput(
                "image must be a Docker image reference such as 'remotegpu/base:latest'",
                code="invalid_image", details={"field": "image"},
            )
        if not self.allows(image):
            raise InvalidInput(
                f"image {image} is not allowed here: it must match one of {', '.join(self.patterns) or '(none)'}",
                code="image_not_allowed", details={"field": "image", "patterns": list(self.patterns)},
            )

    def allows(self, image: str) -> bool:
        if self.default_image and image == self.default_image:
            return True
        repository = repository_of(image)
        return any(fnmatchcase(image, p) or fnmatchcase(repository, p) for p in self.patterns)


def parse_patterns(text: str) -> tuple[str, ...]:
    """``"a/*, b/c"`` → ``("a/*", "b/c")`` (blank entries dropped)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())
