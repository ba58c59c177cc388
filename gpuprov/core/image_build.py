"""What a team image build installs and the labels it carries, from the pin.

The labels are how an image states its promises; the audit reads them back,
so both sides take the keys from here.
"""

from __future__ import annotations

from collections.abc import Mapping

LABEL_PREFIX = "org.gpuprov."
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
PACKAGE_MANAGER_LABEL = f"{LABEL_PREFIX}package-manager"


def requirements(promises: Mapping[str, str]) -> list[str]:
    """Exact pins for the torch family the pin promises, in a fixed order."""
    return [f"{name}=={promises[name]}" for name in TORCH_FAMILY if promises.get(name)]


def labels(promises: Mapping[str, str], package_manager: str = "pip") -> dict[str, str]:
    found = {f"{LABEL_PREFIX}{key}": str(value) for key, value in sorted(promises.items())}
    found[PACKAGE_MANAGER_LABEL] = package_manager
    return found
