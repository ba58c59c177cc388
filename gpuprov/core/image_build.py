"""What a team image build installs and the labels it carries, from the pin.

The labels are how an image states its promises and what it was built from; the
audit reads the promise labels back, so both sides take the names from labels.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import image_ref
from .labels import PACKAGE_MANAGER_LABEL, label_for
from .torch_matrix import CPU_BUILD, TORCH_FAMILY, build_for_cuda_version, no_cuda
from .user_layer import layer_name

PACKAGE_MANAGERS = ("pip", "conda")
# Build inputs: what a person needs to rebuild the same image.
BUILD_LABELS = {
    "base": label_for("build.base"),
    "base_digest": label_for("build.base-digest"),
    "index": label_for("build.index"),
    "requirements": label_for("build.requirements"),
}
OCI_BASE_NAME = "org.opencontainers.image.base.name"
OCI_BASE_DIGEST = "org.opencontainers.image.base.digest"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
CONDA_FORGE = "conda-forge"


class BuildInputError(ValueError):
    """The build inputs would give an image that is not reproducible or not auditable."""


def cuda_build(promises: Mapping[str, object]) -> str:
    """The wheel build the pin asks for: 'cpu' or 'cu126'."""
    cuda = promises.get("cuda")
    return CPU_BUILD if no_cuda(cuda) else build_for_cuda_version(str(cuda))


def user_layer(promises: Mapping[str, object]) -> str:
    """The users' package layer the pinned image keeps (user_layer.layer_name), as its
    build will name it from what it installs."""
    torch = promises.get("torch")
    return layer_name(
        str(promises.get("python", "")), str(torch) if torch else None, cuda_build(promises)
    )


def torch_index(promises: Mapping[str, object], base_url: str = PYTORCH_INDEX) -> str:
    """The PyTorch wheel index that holds exactly this CUDA build."""
    return f"{base_url.rstrip('/')}/{cuda_build(promises)}"


def _pip_version(name: str, version: str, build: str) -> str:
    """torch 2.7.1 on cu126 -> '2.7.1+cu126': the wheel of exactly that build."""
    if "+" in version:
        return version
    return f"{version}+{build}"


def requirements(
    promises: Mapping[str, object], extra: Sequence[str] = (), package_manager: str = "pip"
) -> list[str]:
    """Exact pins for the torch family the pin promises, then `extra`, in a fixed order.

    pip: `torch==2.7.1+cu126` (the local version names the CUDA build, so pip can
    only take the wheel from the matching index); conda: `pytorch=2.7.1=cuda126*`.
    """
    build = cuda_build(promises)
    found = []
    for name in TORCH_FAMILY:
        version = promises.get(name)
        if not version:
            continue
        version = str(version)
        if package_manager == "conda":
            conda_name = "pytorch" if name == "torch" else name
            flavour = "cpu" if build == CPU_BUILD else f"cuda{build[2:]}"
            found.append(f"{conda_name}={version.split('+')[0]}={flavour}*")
        else:
            found.append(f"{name}=={_pip_version(name, version, build)}")
    for requirement in extra:
        if requirement not in found:
            found.append(requirement)
    return found


def labels(
    promises: Mapping[str, object],
    package_manager: str = "pip",
    inputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The promise labels (audited against the pin) and the build-input labels."""
    found = {label_for(key): str(value) for key, value in sorted(promises.items())}
    found[PACKAGE_MANAGER_LABEL] = package_manager
    for key, value in sorted((inputs or {}).items()):
        if key not in BUILD_LABELS:
            raise BuildInputError(
                f"unknown build input {key!r}; known: {', '.join(sorted(BUILD_LABELS))}"
            )
        found[BUILD_LABELS[key]] = str(value)
    if inputs and inputs.get("base"):
        found[OCI_BASE_NAME] = str(inputs["base"])
    if inputs and inputs.get("base_digest"):
        found[OCI_BASE_DIGEST] = str(inputs["base_digest"])
    return found


def check_base(base: str, local: bool) -> str | None:
    """Why `base` may not be built FROM, or None.

    A base from a registry must be pinned by digest (NVIDIA deletes old tags; a tag
    moves); a base built on the build host itself (debootstrap, a test bed) is named
    by its image ID at build time instead.
    """
    try:
        ref = image_ref.parse(base)
    except image_ref.ImageReferenceError as error:
        return f"team_image_base_image: {error}"
    if ref.digest or local:
        return None
    return (
        f"team_image_base_image {base!r} is not pinned by digest; a tag moves and NVIDIA "
        "deletes old ones: write it as NAME:TAG@sha256:... (docker pull it once, then "
        "docker image inspect -f '{{index .RepoDigests 0}}' NAME:TAG), or set "
        "team_image_base_local: true for a base built on the build host"
    )


def build_problem(
    base: str,
    local: bool,
    base_on_host: bool,
    package_manager: str,
    conda_channels: Sequence[str],
    micromamba_sha256: str,
) -> str:
    """Why the build may not start with these inputs, or ''."""
    if local and not base_on_host:
        return f"team_image_base_local is true but {base} is not on the build host"
    if package_manager == "conda" and not micromamba_sha256:
        missing = "team_image_micromamba_sha256 is empty: the conda build verifies micromamba by it"
    else:
        missing = None
    return (
        check_base(base, local)
        or check_package_manager(package_manager, conda_channels)
        or missing
        or ""
    )


def check_package_manager(package_manager: str, conda_channels: Sequence[str]) -> str | None:
    """One package manager, and conda from conda-forge only: why not, or None."""
    if package_manager not in PACKAGE_MANAGERS:
        return f"team_image_package_manager is {package_manager!r}; use one of " + ", ".join(
            PACKAGE_MANAGERS
        )
    if package_manager == "conda" and list(conda_channels) != [CONDA_FORGE]:
        return (
            f"team_image_conda_channels is {list(conda_channels)!r}; the team image takes "
            f"conda packages from {CONDA_FORGE} only (PyTorch left the pytorch channel after "
            "2.5, and mixing channels mixes builds)"
        )
    return None
