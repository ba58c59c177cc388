"""Compatibility facts of the NVIDIA / CUDA / PyTorch stack, as data with sources.

Each table names the page it was copied from; re-check a row against that page
before relying on it for a release newer than the table. `TABLES_UPDATED` is
when the tables were last checked against their sources: a release newer than
them is answered from the host's and the image's own evidence, with a warning
that names this date, never with a silent pass or a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .torch_matrix import RELEASES, cuda_version_of_build
from .versions import Version, VersionError, major_minor, parse_version

# The month the tables below were last checked against their sources.
TABLES_UPDATED = "2026-12"


class CompatError(ValueError):
    """A question the tables cannot answer (an unknown CUDA version or build)."""


def beyond_tables(what: str) -> str:
    """The words every "newer than gpuprov knows" finding starts with."""
    return f"{what} is beyond gpuprov's table (updated {TABLES_UPDATED})"


@dataclass(frozen=True)
class Source:
    title: str
    url: str

    def __str__(self) -> str:
        return f"{self.title} <{self.url}>"


# --- Minimum Linux driver per CUDA toolkit ----------------------------------

DRIVER_TABLE_SOURCE = Source(
    "CUDA Toolkit Release Notes, table 'CUDA Toolkit and Corresponding Driver Versions'",
    "https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html",
)


def _installer(toolkit: str, driver: str) -> Source:
    # NVIDIA names each Linux runfile after the toolkit and the driver it bundles,
    # which is the release notes' minimum for that toolkit.
    return Source(
        f"NVIDIA CUDA {toolkit} Linux runfile, bundling driver {driver}",
        f"https://developer.download.nvidia.com/compute/cuda/{toolkit}/local_installers/"
        f"cuda_{toolkit}_{driver}_linux.run",
    )


@dataclass(frozen=True)
class DriverMinimum:
    """CUDA X.Y update N (0 = GA; toolkit X.Y.N) needs at least this Linux driver."""

    cuda: str
    update: int
    driver: str
    source: Source = DRIVER_TABLE_SOURCE


MIN_DRIVER_FOR_CUDA: tuple[DriverMinimum, ...] = (
    DriverMinimum("11.8", 0, "520.61.05"),
    DriverMinimum("12.0", 0, "525.60.13"),
    DriverMinimum("12.0", 1, "525.85.12"),
    DriverMinimum("12.1", 0, "530.30.02"),
    DriverMinimum("12.2", 0, "535.54.03"),
    DriverMinimum("12.2", 1, "535.86.09"),
    DriverMinimum("12.2", 2, "535.104.05"),
    DriverMinimum("12.3", 0, "545.23.06"),
    DriverMinimum("12.3", 1, "545.23.08"),
    DriverMinimum("12.4", 0, "550.54.14"),
    DriverMinimum("12.4", 1, "550.54.15"),
    DriverMinimum("12.5", 0, "555.42.02"),
    DriverMinimum("12.5", 1, "555.42.06"),
    DriverMinimum("12.6", 0, "560.28.03"),
    DriverMinimum("12.6", 1, "560.35.03", _installer("12.6.1", "560.35.03")),
    DriverMinimum("12.6", 2, "560.35.03", _installer("12.6.2", "560.35.03")),
    DriverMinimum("12.6", 3, "560.35.05"),
    DriverMinimum("12.8", 0, "570.26"),
    DriverMinimum("12.8", 1, "570.124.06"),
    DriverMinimum("12.9", 0, "575.51.03"),
    DriverMinimum("12.9", 1, "575.57.08"),
    DriverMinimum("13.0", 0, "580.65.06"),
    DriverMinimum("13.0", 1, "580.82.07"),
    DriverMinimum("13.0", 2, "580.95.05"),
    DriverMinimum("13.1", 0, "590.44.01", _installer("13.1.0", "590.44.01")),
    DriverMinimum("13.1", 1, "590.48.01", _installer("13.1.1", "590.48.01")),
    DriverMinimum("13.2", 0, "595.45.04", _installer("13.2.0", "595.45.04")),
    DriverMinimum("13.2", 1, "595.58.03", _installer("13.2.1", "595.58.03")),
    DriverMinimum("13.3", 0, "610.43.02", _installer("13.3.0", "610.43.02")),
    DriverMinimum("13.3", 1, "610.43.02", _installer("13.3.1", "610.43.02")),
)
# CUDA 13.4 and 13.5 exist, but from 13.4.1 on NVIDIA's runfile names no longer
# carry the driver, and their release notes' table was not readable here: they
# are answered from the driver's own CUDA version, with a beyond-the-table warning.

# --- Minor-version compatibility and forward compatibility -------------------

MINOR_VERSION_COMPAT_SOURCE = Source(
    "CUDA Compatibility: Minor Version Compatibility",
    "https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html",
)

# Per CUDA major: the oldest driver that runs any X.y application, with limits.
MINOR_VERSION_COMPAT_FLOOR: dict[int, str] = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580",
}

MINOR_VERSION_COMPAT_LIMITS = (
    "no JIT compilation of PTX newer than the driver (a GPU missing from the "
    "wheel's arch list fails), and features that need the newer driver are absent"
)

FORWARD_COMPAT_SOURCE = Source(
    "CUDA Compatibility: Forward Compatibility",
    "https://docs.nvidia.com/deploy/cuda-compatibility/forward-compatibility.html",
)

FORWARD_COMPAT_RULE = (
    "a newer CUDA on an older driver through the cuda-compat package in the image "
    "works on data-center GPUs (and a few NGC-ready RTX parts) only, never on GeForce"
)

# --- PyTorch CUDA builds and the GPU architectures in their wheels ----------

# The CUDA builds PyTorch has published wheels for, and the CUDA each one is.
TORCH_CUDA_BUILDS: dict[str, str] = {
    tag: str(cuda_version_of_build(tag))
    for tag in ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130", "cu132")
}

_BUILDER_SCRIPT = Source(
    "pytorch/builder manywheel/build_cuda.sh, TORCH_CUDA_ARCH_LIST per CUDA version",
    "https://github.com/pytorch/builder/blob/main/manywheel/build_cuda.sh",
)
_CU124_REPORT = Source(
    "torch 2.6 (default wheel cu124) refusing sm_120: 'supports CUDA capabilities "
    "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90' (illuin-tech/colpali#267)",
    "https://github.com/illuin-tech/colpali/issues/267",
)
_BUILD_SCRIPT_2_7 = Source(
    "pytorch/pytorch release/2.7 .ci/manywheel/build_cuda.sh (12.8.0 row of the CUDA "
    "upgrade runbook in .ci/docker/README.md agrees)",
    "https://github.com/pytorch/pytorch/blob/release/2.7/.ci/manywheel/build_cuda.sh",
)
_BUILD_SCRIPT_2_8 = Source(
    "pytorch/pytorch release/2.8 .ci/manywheel/build_cuda.sh",
    "https://github.com/pytorch/pytorch/blob/release/2.8/.ci/manywheel/build_cuda.sh",
)
_BUILD_SCRIPT_MAIN = Source(
    "pytorch/pytorch .ci/manywheel/build_cuda.sh (x86_64 list)",
    "https://github.com/pytorch/pytorch/blob/main/.ci/manywheel/build_cuda.sh",
)
_ARCH_LIST_REPORT = Source(
    "pytorch/pytorch#182250: torch.cuda.get_arch_list() of 2.10/2.11 cu126 and cu128",
    "https://github.com/pytorch/pytorch/issues/182250",
)


@dataclass(frozen=True)
class WheelArchList:
    """TORCH_CUDA_ARCH_LIST of the official Linux x86_64 wheels of one CUDA build,
    from torch release `torch_from` until the next row of the same build."""

    build: str
    torch_from: str
    archs: tuple[str, ...]
    source: Source


WHEEL_ARCH_LISTS: tuple[WheelArchList, ...] = (
    WheelArchList(
        "cu118", "2.0", ("3.7", "5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"), _BUILDER_SCRIPT
    ),
    WheelArchList(
        "cu121", "2.1", ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"), _BUILDER_SCRIPT
    ),
    WheelArchList("cu124", "2.4", ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"), _CU124_REPORT),
    WheelArchList(
        "cu126", "2.6", ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"), _BUILD_SCRIPT_MAIN
    ),
    # 2.7 shipped cu128 without Volta; 2.8 put sm_70 back (pytorch/pytorch#157517)
    # and 2.11 dropped it again.
    WheelArchList(
        "cu128", "2.7", ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"), _BUILD_SCRIPT_2_7
    ),
    WheelArchList(
        "cu128", "2.8", ("7.0", "7.5", "8.0", "8.6", "9.0", "10.0", "12.0"), _BUILD_SCRIPT_2_8
    ),
    WheelArchList("cu128", "2.11", ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"), _ARCH_LIST_REPORT),
    WheelArchList(
        "cu129", "2.8", ("7.0", "7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"), _BUILD_SCRIPT_2_8
    ),
    # CUDA 13 itself dropped Maxwell, Pascal and Volta.
    WheelArchList(
        "cu130", "2.9", ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"), _BUILD_SCRIPT_MAIN
    ),
    # cu132 (torch 2.12 on) has no row: its arch list was not found in a stored
    # source, so the gate says so and leaves the proof to the CUDA workload.
)

# --- NVIDIA Container Toolkit security floor --------------------------------


@dataclass(frozen=True)
class Advisory:
    cve: str
    fixed_in: str
    summary: str
    url: str


# NVIDIA's bulletins (nvidia.com/security, github.com/NVIDIA/product-security),
# each CVE with the first toolkit release that fixes it.
TOOLKIT_ADVISORIES: tuple[Advisory, ...] = (
    Advisory(
        "CVE-2024-0132",
        "1.16.2",
        "TOCTOU in the container hook lets a crafted image reach the host file system",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-0132",
    ),
    Advisory(
        "CVE-2024-0135",
        "1.17.3",
        "improper isolation: a crafted image can modify a host binary",
        "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/security.html",
    ),
    Advisory(
        "CVE-2025-23359",
        "1.17.4",
        "bypass of the CVE-2024-0132 fix: container escape to the host",
        "https://nvd.nist.gov/vuln/detail/CVE-2025-23359",
    ),
    Advisory(
        "CVE-2025-23266",
        "1.17.8",
        "LD_PRELOAD through the createContainer hook: root on the host (NVIDIAScape)",
        "https://nvd.nist.gov/vuln/detail/CVE-2025-23266",
    ),
    Advisory(
        "CVE-2025-23267",
        "1.17.8",
        "link following in the update-ldcache hook: a crafted image tampers with host files",
        "https://nvd.nist.gov/vuln/detail/CVE-2025-23267",
    ),
    Advisory(
        "CVE-2026-24260",
        "1.19.1",
        "TOCTOU race in the toolkit: code execution and privilege escalation on the host "
        "(all versions up to 1.19.0; bulletin 5850, June 2026)",
        "https://github.com/NVIDIA/product-security/blob/main/2026/5850/5850.md",
    ),
)

TOOLKIT_MIN_SAFE = max((a.fixed_in for a in TOOLKIT_ADVISORIES), key=parse_version)


# --- Questions ---------------------------------------------------------------


def _cuda_version(cuda: str) -> Version:
    try:
        return parse_version(cuda)
    except VersionError as exc:
        raise CompatError(f"CUDA version {cuda!r}: {exc}") from exc


def min_driver_for_cuda(cuda: str) -> Version:
    """Minimum Linux driver for CUDA "X.Y" (GA) or toolkit "X.Y.N" (update N).

    An update missing from the table takes the newest listed update below it.
    """
    version = _cuda_version(cuda)
    family = major_minor(version)
    update = version.parts[2] if len(version.parts) > 2 else 0
    rows = [row for row in MIN_DRIVER_FOR_CUDA if parse_version(row.cuda) == family]
    if not rows:
        known = ", ".join(sorted({row.cuda for row in MIN_DRIVER_FOR_CUDA}, key=parse_version))
        raise CompatError(
            f"CUDA {cuda} is not in gpuprov's driver table (knows {known}); add its row "
            f"from {DRIVER_TABLE_SOURCE}"
        )
    applicable = [row for row in rows if row.update <= update]
    return parse_version(max(applicable, key=lambda row: row.update).driver)


def newest_build_for_driver(driver: str) -> str | None:
    """The newest PyTorch CUDA build whose CUDA GA fully supports this driver."""
    version = parse_version(driver)
    fitting = [
        build
        for build, cuda in TORCH_CUDA_BUILDS.items()
        if any(row.cuda == cuda for row in MIN_DRIVER_FOR_CUDA)
        and version >= min_driver_for_cuda(cuda)
    ]
    return max(fitting, key=lambda build: parse_version(TORCH_CUDA_BUILDS[build]), default=None)


class Support(StrEnum):
    OK = "ok"
    MINOR_VERSION_COMPAT = "minor-version-compat"
    TOO_OLD = "too-old"
    # Newer than the tables and the driver gave no evidence either way.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    status: Support
    driver: str
    cuda: str
    required: str | None
    suggested_build: str | None
    message: str
    # Set when the answer rests on evidence outside the tables (a release newer
    # than them): what was beyond them and what was used instead.
    beyond: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Support.OK


def _remedy(suggested: str | None) -> str:
    if suggested:
        return f"upgrade the driver or pin an image built for {suggested}"
    return "upgrade the driver (no PyTorch CUDA build in gpuprov's table runs on it)"


def _newest(values: Iterable[str]) -> Version:
    return max((parse_version(v) for v in values), default=parse_version("0"))


def _driver_beyond(drv: Version) -> str | None:
    """The note for a driver branch newer than every driver in the table, else None."""
    newest = _newest(row.driver for row in MIN_DRIVER_FOR_CUDA)
    if drv.major <= newest.major:
        return None
    return (
        f"{beyond_tables(f'driver {drv}')}, whose newest branch is {newest.major}; "
        f"NVIDIA drivers run applications built with older CUDA (backward compatibility)"
    )


def driver_supports_cuda(driver: str, cuda: str, *, driver_cuda: str | None = None) -> Verdict:
    """Whether `driver` runs applications built with CUDA `cuda`.

    `driver_cuda` is the CUDA version nvidia-smi reports (the newest CUDA the
    driver supports); it answers for CUDA releases newer than the table, with
    a `beyond` note that says so.
    """
    drv = parse_version(driver)
    wanted = _cuda_version(cuda)
    try:
        required = min_driver_for_cuda(cuda)
    except CompatError as exc:
        newer = major_minor(wanted) > _newest(row.cuda for row in MIN_DRIVER_FOR_CUDA)
        where = beyond_tables(f"CUDA {cuda}") if newer else str(exc)
        if driver_cuda is None:
            return Verdict(
                Support.UNKNOWN,
                driver,
                cuda,
                None,
                None,
                f"{where}, and the driver did not report the CUDA version it supports: read "
                f"'CUDA Version' (or 'CUDA UMD Version') in the `nvidia-smi` header by hand",
            )
        if parse_version(driver_cuda) >= major_minor(wanted):
            return Verdict(
                Support.OK,
                driver,
                cuda,
                None,
                None,
                f"driver {driver} reports CUDA {driver_cuda} >= {cuda}",
                beyond=f"{where}; the evidence is the CUDA version the driver reports",
            )
        required = None
    if required is not None and drv >= required:
        return Verdict(
            Support.OK,
            driver,
            cuda,
            required.text,
            None,
            f"driver {driver} >= {required} needed by CUDA {cuda}",
            beyond=_driver_beyond(drv),
        )
    suggested = newest_build_for_driver(driver)
    shortfall = (
        f"driver {driver} < {required} needed by CUDA {cuda}"
        if required
        else f"driver {driver} reports CUDA {driver_cuda} < {cuda}"
    )
    floor_text = MINOR_VERSION_COMPAT_FLOOR.get(wanted.major)
    if floor_text and drv >= parse_version(floor_text):
        return Verdict(
            Support.MINOR_VERSION_COMPAT,
            driver,
            cuda,
            required and required.text,
            suggested,
            f"{shortfall}; it runs only through minor-version compatibility "
            f"(CUDA {wanted.major}.x on driver >= {floor_text}: {MINOR_VERSION_COMPAT_LIMITS}): "
            f"{_remedy(suggested)}",
        )
    below = (
        f"below the CUDA {wanted.major}.x minor-version-compatibility floor {floor_text}"
        if floor_text
        else f"no minor-version compatibility for CUDA {wanted.major}.x"
    )
    return Verdict(
        Support.TOO_OLD,
        driver,
        cuda,
        required and required.text,
        suggested,
        f"{shortfall} ({below}): {_remedy(suggested)}",
    )


class ArchSupport(StrEnum):
    NATIVE = "native"
    PTX_JIT = "ptx-jit"
    UNSUPPORTED = "unsupported"
    # The build's arch list is not in the table: only a CUDA operation can tell.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ArchVerdict:
    status: ArchSupport
    build: str
    cc: str
    archs: tuple[str, ...]
    message: str
    beyond: str | None = None

    @property
    def supported(self) -> bool:
        return self.status is not ArchSupport.UNSUPPORTED


def wheel_arch_list(build: str, torch: str | None = None) -> tuple[str, ...]:
    """The arch list of `build`'s wheels for `torch`, or, without a torch
    version, only what every torch release of that build carried."""
    rows = [row for row in WHEEL_ARCH_LISTS if row.build == build]
    if not rows:
        raise CompatError(
            f"unknown PyTorch CUDA build {build!r}; known: {', '.join(TORCH_CUDA_BUILDS)}"
        )
    if torch is None:
        numbers = [{a.removesuffix("+PTX") for a in row.archs} for row in rows]
        common = set.intersection(*numbers)
        ptx = set.intersection(
            *({a.removesuffix("+PTX") for a in row.archs if a.endswith("+PTX")} for row in rows)
        )
        ordered = sorted(common, key=parse_version)
        return tuple(f"{a}+PTX" if a in ptx else a for a in ordered)
    release = major_minor(torch)
    shipped = [row for row in rows if parse_version(row.torch_from) <= release]
    if not shipped:
        raise CompatError(
            f"torch {torch} has no {build} wheels in gpuprov's table (the first is "
            f"torch {rows[0].torch_from}); check the image's torch pin"
        )
    return max(shipped, key=lambda row: parse_version(row.torch_from)).archs


def cuda_build_supports_cc(build: str, cc: str, torch: str | None = None) -> ArchVerdict:
    """Whether the `build` wheels run on a GPU of compute capability `cc`.

    SASS for X.y runs on X.z with z >= y; PTX for X.y is JIT-compiled for any
    newer GPU, which needs a driver that fully supports the build's CUDA.
    """
    gpu = major_minor(cc)
    if not any(row.build == build for row in WHEEL_ARCH_LISTS):
        known = ", ".join(dict.fromkeys(row.build for row in WHEEL_ARCH_LISTS))
        subject = f"the GPU architecture list of the {build} wheels"
        return ArchVerdict(
            ArchSupport.UNKNOWN,
            build,
            cc,
            (),
            f"{beyond_tables(subject)}, which lists "
            f"{known}: whether compute capability {cc} runs is shown by the CUDA workload "
            f"check, or by hand with `python -c 'import torch; print(torch.cuda.get_arch_list())'` "
            f"in the image",
        )
    archs = wheel_arch_list(build, torch)
    newest_torch = _newest(r.torch for r in RELEASES)
    beyond = (
        f"{beyond_tables(f'torch {torch}')}: the {build} arch list of the newest known "
        f"release is assumed"
        if torch and major_minor(torch) > newest_torch
        else None
    )
    sass = [parse_version(a.removesuffix("+PTX")) for a in archs]
    ptx = [parse_version(a.removesuffix("+PTX")) for a in archs if a.endswith("+PTX")]
    listed = ";".join(archs)
    which = f"torch {torch} {build}" if torch else f"{build} (every torch release)"
    if any(s.major == gpu.major and s.minor <= gpu.minor for s in sass):
        return ArchVerdict(
            ArchSupport.NATIVE,
            build,
            cc,
            archs,
            f"compute capability {cc} runs natively on {which} [{listed}]",
            beyond,
        )
    if any(p <= gpu for p in ptx):
        return ArchVerdict(
            ArchSupport.PTX_JIT,
            build,
            cc,
            archs,
            f"compute capability {cc} runs {which} only by JIT-compiling its PTX [{listed}]: "
            f"slow first start, and the driver must fully support CUDA "
            f"{TORCH_CUDA_BUILDS[build]}",
            beyond,
        )
    return ArchVerdict(
        ArchSupport.UNSUPPORTED,
        build,
        cc,
        archs,
        f"compute capability {cc} is not in the {which} wheels [{listed}]: CUDA ops fail with "
        f"'no kernel image is available for execution on the device'; pin a build that lists it",
        beyond,
    )


def toolkit_findings(version: str) -> tuple[Advisory, ...]:
    """The advisories an NVIDIA Container Toolkit `version` is still exposed to."""
    installed = parse_version(version)
    return tuple(a for a in TOOLKIT_ADVISORIES if installed < parse_version(a.fixed_in))
