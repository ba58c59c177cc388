"""The Docker labels gpuprov writes on images and containers, and reads back."""

from __future__ import annotations

PREFIX = "org.gpuprov."
# On workspace containers: whose it is, which kind, what it runs, its spec's digest.
USER_LABEL = f"{PREFIX}user"
KIND_LABEL = f"{PREFIX}kind"
IMAGE_LABEL = f"{PREFIX}image"
SPEC_LABEL = f"{PREFIX}spec"
# On images: the one package manager the image was built with (pip, uv or conda).
PACKAGE_MANAGER_LABEL = f"{PREFIX}package-manager"


def label_for(name: str) -> str:
    """gpuprov's label called ``name`` (``user`` -> ``org.gpuprov.user``)."""
    return f"{PREFIX}{name}"
