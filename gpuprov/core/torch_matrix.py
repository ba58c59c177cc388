"""PyTorch releases: which torchvision/torchaudio go with each torch, and its CUDA builds.

Sources, per row in `RELEASES`:
- CUDA builds and bundled cuDNN: pytorch/pytorch RELEASE.md, "Release Compatibility
  Matrix" (stable vs experimental CUDA columns), checked against the release blogs.
- torchvision / torchaudio pairing: pytorch.org/get-started/compatibility (as mirrored in
  PyTorchKR/pytorch.kr `_get_started/version-compatibility.md`) and the domain libraries'
  release PRs named on the row.

Rows are data: to add a release, add a row with its source; never derive a pairing by
arithmetic (torchvision's minor is not torch's minor minus a constant forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CPU_BUILD = "cpu"
# The packages released together as one PyTorch version.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")


def no_cuda(value: object) -> bool:
    """Whether a pin or label says "no CUDA" (the CPU flavour): unset, "", "none" or "cpu"."""
    return value is None or str(value).strip().lower() in ("", "none", "cpu")


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA flavour of a torch release, as published on download.pytorch.org."""

    tag: str  # "cu126", the wheel index and local-version suffix
    stable: bool  # False: RELEASE.md lists it under "Experimental CUDA"
    cudnn: str | None  # the cuDNN the wheels depend on / bundle; None: not in a source


@dataclass(frozen=True)
class TorchRelease:
    torch: str  # minor, "2.7"
    torchvision: str  # minor, "0.22"
    torchaudio: str  # minor, "2.7"
    builds: tuple[CudaBuild, ...]
    source: str

    def build(self, tag: str) -> CudaBuild | None:
        return next((b for b in self.builds if b.tag == tag), None)


def _builds(
    stable: dict[str, str | None], experimental: dict[str, str | None]
) -> tuple[CudaBuild, ...]:
    return tuple(CudaBuild(t, True, c) for t, c in stable.items()) + tuple(
        CudaBuild(t, False, c) for t, c in experimental.items()
    )


_RELEASE_MD = "pytorch/pytorch RELEASE.md release compatibility matrix"

RELEASES: tuple[TorchRelease, ...] = (
    TorchRelease(
        "2.4",
        "0.19",
        "2.4",
        _builds({"cu118": "9.1.0.70", "cu121": "9.1.0.70"}, {"cu124": "9.1.0.70"}),
        f"{_RELEASE_MD}; PyTorch 2.4 release blog",
    ),
    TorchRelease(
        "2.5",
        "0.20",
        "2.5",
        _builds({"cu118": "9.1.0.70", "cu121": "9.1.0.70", "cu124": "9.1.0.70"}, {}),
        f"{_RELEASE_MD}; PyTorch 2.5 release blog",
    ),
    TorchRelease(
        "2.6",
        "0.21",
        "2.6",
        _builds({"cu118": "9.1.0.70", "cu124": "9.1.0.70"}, {"cu126": "9.5.1.17"}),
        f"{_RELEASE_MD}; PyTorch 2.6 release blog",
    ),
    TorchRelease(
        "2.7",
        "0.22",
        "2.7",
        _builds({"cu118": "9.1.0.70", "cu126": "9.5.1.17"}, {"cu128": "9.7.1.26"}),
        f"{_RELEASE_MD}; PyTorch 2.7 release blog",
    ),
    TorchRelease(
        "2.8",
        "0.23",
        "2.8",
        _builds({"cu126": "9.10.2.21", "cu128": "9.10.2.21"}, {"cu129": "9.10.2.21"}),
        f"{_RELEASE_MD}; PyTorch 2.8 release blog",
    ),
    TorchRelease(
        "2.9",
        "0.24",
        "2.9",
        _builds({"cu126": "9.10.2.21", "cu128": "9.10.2.21"}, {"cu130": "9.13.0.50"}),
        f"{_RELEASE_MD}; PyTorch 2.9 release blog",
    ),
    TorchRelease(
        "2.10",
        "0.25",
        "2.10",
        _builds({"cu126": "9.10.2.21", "cu128": "9.10.2.21"}, {"cu130": "9.15.1.9"}),
        f"{_RELEASE_MD}; pytorch.org compatibility table; pytorch/vision#9311, pytorch/audio#4150",
    ),
    TorchRelease(
        "2.11",
        "0.26",
        "2.11",
        _builds({"cu126": "9.10.2.21", "cu128": "9.17.1.4", "cu130": "9.17.1.4"}, {}),
        f"{_RELEASE_MD}; pytorch.org compatibility table; pytorch/audio#4178",
    ),
    # torchaudio stopped following torch after 2.11: pytorch.org lists no torchaudio for
    # 2.12 and 2.13, and pytorch/audio#4212 states torchaudio 2.11 supports torch>=2.11,
    # so 2.11 is the torchaudio that goes with them.
    TorchRelease(
        "2.12",
        "0.27",
        "2.11",
        _builds({"cu126": "9.10.2.21", "cu130": "9.20.0.48"}, {"cu132": "9.20.0.48"}),
        f"{_RELEASE_MD}; pytorch.org compatibility table; pytorch/audio#4212",
    ),
    TorchRelease(
        "2.13",
        "0.28",
        "2.11",
        _builds({"cu126": "9.10.2.21", "cu130": "9.20.0.48"}, {"cu132": "9.20.0.48"}),
        f"{_RELEASE_MD}; pytorch.org compatibility table; pytorch/audio#4212",
    ),
    # Wheels seen published: 2.14.0+cu126, +cu130 (PyPI's default) and +cu132, with
    # torchvision 0.29.0 and torchaudio 2.11.0. RELEASE.md's 2.14 row (stable vs
    # experimental, cuDNN) was not in a stored copy: cu132 stays experimental as in
    # 2.13 and the cuDNN is left unknown rather than guessed.
    TorchRelease(
        "2.14",
        "0.29",
        "2.11",
        _builds({"cu126": None, "cu130": None}, {"cu132": None}),
        "wheels 2.14.0+cu126/cu130/cu132 on download.pytorch.org and PyPI; torchvision "
        "0.29.0 and torchaudio 2.11.0 released beside them; pytorch/audio#4212",
    ),
)

_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:[.\d]*)?(?:[a-z]+\d*)*(?:\.post\d+)?(?:\+(\S+))?\s*$")
_CU_TAG = re.compile(r"^cu(\d{3,})$")


def public_version(version: str) -> str:
    """'2.7.1+cu126' -> '2.7.1': the part every installer agrees on."""
    return version.split("+", 1)[0].strip()


def minor_of(version: str) -> str:
    """'2.7.1+cu126' -> '2.7'."""
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a version like '2.7.1' or '2.7.1+cu126'")
    return f"{int(match.group(1))}.{int(match.group(2))}"


def release_for(torch_version: str) -> TorchRelease | None:
    """The release row for a torch version, or None when the table does not know it."""
    try:
        minor = minor_of(torch_version)
    except ValueError:
        return None
    return next((r for r in RELEASES if r.torch == minor), None)


def cuda_build_of(local_version: str) -> str | None:
    """The CUDA build a wheel version names: '2.7.1+cu126' -> 'cu126', '+cpu' -> 'cpu'.

    None when the version carries no build (PyPI's default wheels) or another local tag.
    """
    _, _, local = local_version.partition("+")
    local = local.strip().lower()
    if local == CPU_BUILD or _CU_TAG.match(local):
        return local
    return None


# conda build strings carry the CUDA build in several spellings across channels:
# pytorch channel 'py3.11_cuda12.4_cudnn9.1.0_0' / 'py311_cu124', conda-forge
# 'cuda126_generic_py311_h..._200', CPU 'cpu_generic_py311_...' / 'py3.11_cpu_0'.
_CONDA_DOTTED = re.compile(r"(?:^|_)cuda(\d+)\.(\d+)(?:_|$)")
_CONDA_PACKED = re.compile(r"(?:^|_)cu(?:da)?(\d{3,})(?:_|$)")
_CONDA_CPU = re.compile(r"(?:^|_)cpu(?:_|$)")


def cuda_build_of_conda(build: str) -> str | None:
    """The CUDA build a conda build string names, in wheel spelling ('cu126', 'cpu')."""
    build = build.strip().lower()
    if match := _CONDA_DOTTED.search(build):
        return f"cu{match.group(1)}{match.group(2)}"
    if match := _CONDA_PACKED.search(build):
        return f"cu{match.group(1)}"
    if _CONDA_CPU.search(build):
        return CPU_BUILD
    return None


def cuda_version_of_build(tag: str) -> str | None:
    """'cu126' -> '12.6', 'cu130' -> '13.0'; 'cpu' -> None."""
    tag = tag.strip().lower()
    if tag == CPU_BUILD:
        return None
    match = _CU_TAG.match(tag)
    if not match:
        raise ValueError(f"{tag!r} is not a CUDA build tag like 'cu126' or 'cpu'")
    digits = match.group(1)
    return f"{int(digits[:-1])}.{digits[-1]}"


def build_for_cuda_version(cuda_version: str) -> str:
    """'12.6' or '12.6.3' -> 'cu126': the build tag a CUDA toolkit version corresponds to."""
    match = re.match(r"^\s*(\d+)\.(\d+)", cuda_version)
    if not match:
        raise ValueError(f"{cuda_version!r} is not a CUDA version like '12.6' or '12.6.3'")
    return f"cu{int(match.group(1))}{int(match.group(2))}"
