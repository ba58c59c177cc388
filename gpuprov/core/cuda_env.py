"""The CUDA an image declares in its own environment.

NVIDIA's CUDA images set `CUDA_VERSION` (the toolkit, e.g. 12.4.1) and
`NVIDIA_REQUIRE_CUDA` (what the container runtime enforces at start, e.g.
`cuda>=12.4 brand=tesla,driver>=470,driver<471 ...`). They are what the image
really needs, whatever its pin promises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_REQUIRE = re.compile(r"(?:^|[\s,])cuda>=(\d+\.\d+(?:\.\d+)?)(?=$|[\s,])")
_DRIVER_FLOOR = re.compile(r"(?:^|[\s,])driver>=(\d+(?:\.\d+)*)(?=$|[\s,])")
_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class ImageCuda:
    """CUDA_VERSION and the `cuda>=` of NVIDIA_REQUIRE_CUDA, as the image sets them."""

    version: str | None = None
    required: str | None = None
    # The driver>= floors of NVIDIA_REQUIRE_CUDA's brand clauses: the driver
    # branches on which the image also runs through forward compatibility.
    driver_floors: tuple[str, ...] = ()

    @property
    def cuda(self) -> str | None:
        """The CUDA the driver must support: the toolkit version, else the runtime's floor."""
        return self.version or self.required

    @property
    def source(self) -> str:
        """Where `cuda` comes from, in the words of `docker image inspect`."""
        if self.version:
            return f"CUDA_VERSION={self.version}"
        return f"NVIDIA_REQUIRE_CUDA cuda>={self.required}"

    def requirement(self) -> str:
        """What the container runtime checks at start, as evidence for a report."""
        floors = ", ".join(f"driver>={f}" for f in self.driver_floors)
        branches = f" (or, through forward compatibility, {floors})" if floors else ""
        return f"NVIDIA_REQUIRE_CUDA cuda>={self.required}{branches}"


def image_cuda(env: Mapping[str, str]) -> ImageCuda | None:
    """The CUDA an image's environment declares, or None for an image that declares none.

    `env` is `image_pin.image_environment` of the inspected image. A value that is
    not a version (an image built by hand) counts as not declared: the pin's
    promise then stands alone.
    """
    version = env.get("CUDA_VERSION", "").strip()
    require = env.get("NVIDIA_REQUIRE_CUDA", "")
    match = _REQUIRE.search(require)
    floors = sorted(
        set(_DRIVER_FLOOR.findall(require)), key=lambda f: [int(p) for p in f.split(".")]
    )
    found = ImageCuda(
        version=version if _VERSION.match(version) else None,
        required=match.group(1) if match else None,
        driver_floors=tuple(floors),
    )
    return found if found.cuda else None
