"""The Docker labels gpuprov writes on images and containers, and reads back."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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


# The pin promises an image states in labels, which the audit reads back.
PROMISE_KEYS = ("python", "torch", "torchvision", "torchaudio", "cuda", "cudnn")
# Each promise's label, and the package manager's: image builds write them, the audit reads them.
IMAGE_LABELS: Mapping[str, str] = MappingProxyType(
    {**{key: label_for(key) for key in PROMISE_KEYS}, "package_manager": PACKAGE_MANAGER_LABEL}
)
