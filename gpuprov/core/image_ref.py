"""Container image references and content digests.

A team image is only reproducible when it is named by content, so gpuprov
parses references itself instead of trusting whatever string reaches Docker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# The grammar of docker/distribution's reference package, reduced to what a
# pin needs: an optional registry host[:port], a lower-case path, a tag.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^(?:(?P<registry>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")


class ImageReferenceError(ValueError):
    """A reference that Docker would reject or that does not say what it means."""


@dataclass(frozen=True)
class ImageRef:
    repository: str
    registry: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Registry and path, without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def pinned(self) -> str:
        """The reference Docker resolves by content alone."""
        if not self.digest:
            raise ImageReferenceError(f"{self} is not pinned by digest")
        return f"{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_digest(value: str) -> bool:
    return bool(DIGEST_RE.match(value))


def parse(reference: str) -> ImageRef:
    """Split ``[registry/]path[:tag][@sha256:...]`` into its parts."""
    if not reference or reference != reference.strip():
        raise ImageReferenceError(f"image reference {reference!r} is empty or has spaces")
    rest, digest = reference, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not is_digest(digest):
            raise ImageReferenceError(
                f"digest {digest!r} in {reference!r} is not 'sha256:' and 64 lower-case hex digits"
            )
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ImageReferenceError(f"tag {tag!r} in {reference!r} is not a valid tag")
    match = _REPO_RE.match(rest)
    if not match:
        raise ImageReferenceError(
            f"{reference!r} is not an image reference: use lower-case "
            "[registry[:port]/]path[:tag][@sha256:digest]"
        )
    registry = match.group("registry")
    path = match.group("path")
    # Docker reads the first component as a registry only when it looks like
    # a host (a dot, a port or 'localhost'); otherwise it is part of the path.
    if registry and not ("." in registry or ":" in registry or registry == "localhost"):
        registry, path = None, f"{registry}/{path}"
    return ImageRef(repository=path, registry=registry, tag=tag, digest=digest)
