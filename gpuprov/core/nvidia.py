"""Parsers for nvidia-smi output, and what a failing nvidia-smi means.

Values nvidia-smi cannot give ("[N/A]", "[Not Supported]", "[Insufficient
Permissions]", ...) become None in the record, with the marker kept in
`GpuRecord.markers` so a check can tell "no ECC on this GPU" from "not allowed
to read ECC".
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# Everything gpuprov reads per GPU. All of these exist in the --help-query-gpu of
# the 590 and 595 drivers in tests/fixtures; a driver that lacks one would fail
# the whole query ("is not a valid field to query"), so the command asks only for
# the fields the driver's own --help-query-gpu offers (see query_gpu_command), and
# the record marks the rest NOT_OFFERED.
QUERY_GPU_FIELDS: tuple[str, ...] = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "compute_cap",
    "mig.mode.current",
    "mig.mode.pending",
    "persistence_mode",
    "ecc.mode.current",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.double_bit.count",
    "retired_pages.pending",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
)

# With the header kept, the output names its own columns: the parser reads any
# subset of QUERY_GPU_FIELDS the driver offered.
QUERY_GPU_FORMAT = "--format=csv,nounits"

# The marker of a field the driver's --help-query-gpu does not offer (older
# drivers) or marks deprecated (the 610 branch's driver_version).
NOT_OFFERED = "[not offered by this driver]"

HELP_QUERY_GPU = ("nvidia-smi", "--help-query-gpu")

# Fields a driver deprecates in favour of another: the 595 branch's help says
# of driver_version 'Deprecated; use "kmd_version" instead' (tests/fixtures).
REPLACEMENTS = {"driver_version": "kmd_version"}

# Synonyms nvidia-smi accepts (and prints in headers) for the same property.
_FIELD_ALIASES = {
    "kmd_version": "driver_version",
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_bus_id": "pci.bus_id",
    "retired_pages.dbe": "retired_pages.double_bit.count",
}


class NvidiaSmiParseError(ValueError):
    """nvidia-smi output that does not have the shape the parser expects."""


@dataclass(frozen=True)
class MigDevice:
    index: int
    profile: str | None = None
    uuid: str | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    memory_total_mib: int | None = None


@dataclass(frozen=True)
class GpuRecord:
    """One physical GPU, from --query-gpu or -L (fields a source lacks are None)."""

    index: int | None
    name: str
    uuid: str | None = None
    pci_bus_id: str | None = None
    driver_version: str | None = None
    memory_total_mib: int | None = None
    compute_capability: str | None = None
    mig_enabled: bool | None = None
    mig_pending: bool | None = None
    persistence_mode: bool | None = None
    ecc_enabled: bool | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    retired_pages_double_bit: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    mig_devices: tuple[MigDevice, ...] = ()
    markers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def label(self) -> str:
        where = f"GPU {self.index}" if self.index is not None else "GPU"
        return f"{where} ({self.name})"


@dataclass(frozen=True)
class DriverInfo:
    driver_version: str
    cuda_version: str | None


# --- values ---------------------------------------------------------------------


def _marker(raw: str) -> str | None:
    """The "cannot tell" marker a value carries, or None for a real value."""
    value = raw.strip()
    if value.startswith("[") and value.endswith("]"):
        return value
    if value.upper() in {"N/A", "NA"}:
        return value
    return None


def _number(raw: str) -> int:
    # Units may or may not be there ("81559 MiB" with units, "81559" without).
    text = raw.strip().split()[0] if raw.strip() else ""
    try:
        return int(text)
    except ValueError:
        raise NvidiaSmiParseError(f"expected a whole number, got {raw!r}") from None


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"enabled", "yes", "on", "active"}:
        return True
    if value in {"disabled", "no", "off", "not active", "none"}:
        return False
    raise NvidiaSmiParseError(f"expected Enabled/Disabled or Yes/No, got {raw!r}")


def _compute_cap(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"\d+\.\d+", value):
        raise NvidiaSmiParseError(f"expected a compute capability like 9.0, got {raw!r}")
    return value


def _driver_version(raw: str) -> str:
    value = raw.strip()
    # The 610 branch prints a notice ("Deprecated, see ...") where a version was.
    if not re.fullmatch(r"\d+(\.\d+)+", value):
        raise _NotAValue(value)
    return value


class _NotAValue(Exception):
    """A cell that holds a notice instead of a value: kept as a marker."""


_CONVERTERS = {
    "index": _number,
    "driver_version": _driver_version,
    "memory.total": _number,
    "compute_cap": _compute_cap,
    "mig.mode.current": _flag,
    "mig.mode.pending": _flag,
    "persistence_mode": _flag,
    "ecc.mode.current": _flag,
    "ecc.errors.uncorrected.volatile.total": _number,
    "ecc.errors.uncorrected.aggregate.total": _number,
    "retired_pages.double_bit.count": _number,
    "retired_pages.pending": _flag,
    "remapped_rows.uncorrectable": _number,
    "remapped_rows.pending": _flag,
    "remapped_rows.failure": _flag,
}

_RECORD_FIELDS = {
    "index": "index",
    "name": "name",
    "uuid": "uuid",
    "pci.bus_id": "pci_bus_id",
    "driver_version": "driver_version",
    "memory.total": "memory_total_mib",
    "compute_cap": "compute_capability",
    "mig.mode.current": "mig_enabled",
    "mig.mode.pending": "mig_pending",
    "persistence_mode": "persistence_mode",
    "ecc.mode.current": "ecc_enabled",
    "ecc.errors.uncorrected.volatile.total": "ecc_uncorrected_volatile",
    "ecc.errors.uncorrected.aggregate.total": "ecc_uncorrected_aggregate",
    "retired_pages.double_bit.count": "retired_pages_double_bit",
    "retired_pages.pending": "retired_pages_pending",
    "remapped_rows.uncorrectable": "remapped_rows_uncorrectable",
    "remapped_rows.pending": "remapped_rows_pending",
    "remapped_rows.failure": "remapped_rows_failure",
}


def _record(values: Mapping[str, str]) -> GpuRecord:
    kwargs: dict[str, object] = {}
    markers: dict[str, str] = {}
    for query_field, attribute in _RECORD_FIELDS.items():
        if query_field not in values:
            markers[attribute] = NOT_OFFERED
            continue
        raw = values[query_field].strip()
        marker = _marker(raw)
        if marker is not None:
            markers[attribute] = marker
            continue
        if not raw:
            continue
        convert = _CONVERTERS.get(query_field)
        try:
            kwargs[attribute] = convert(raw) if convert else raw
        except _NotAValue:
            markers[attribute] = f"[{raw}]"
        except NvidiaSmiParseError as exc:
            raise NvidiaSmiParseError(f"field {query_field}: {exc}") from None
    if "name" not in kwargs:
        raise NvidiaSmiParseError("a GPU row without a name: is 'name' in the queried fields?")
    return GpuRecord(**kwargs, markers=markers)  # type: ignore[arg-type]


# --- --help-query-gpu --------------------------------------------------------------

_HELP_FIELD = re.compile(r'^"([^"]+)"(?:\s+or\s+"([^"]+)")*')


def parse_help_query_gpu(text: str) -> dict[str, bool]:
    """The fields `nvidia-smi --help-query-gpu` lists, each with whether it is deprecated.

    Each property is a line of quoted names ("name" or "gpu_name"), then its
    description up to the next blank line; a description with a "Deprecated;"
    or "Deprecated," sentence marks every name of that property (a lower-case
    "deprecated" describes one of the values, as compute_mode's does).
    """
    offered: dict[str, bool] = {}
    names: list[str] = []
    for line in [*text.splitlines(), ""]:
        if _HELP_FIELD.match(line):
            names = re.findall(r'"([^"]+)"', line.split(" or ")[0] + " " + line)
            for name in names:
                offered[name] = False
        elif not line.strip():
            names = []
        elif names and re.search(r"\bDeprecated[;,.]", line):
            for name in names:
                offered[name] = True
    return offered


def query_fields(offered: Mapping[str, bool] | None) -> tuple[str, ...]:
    """QUERY_GPU_FIELDS that this driver offers and does not deprecate.

    `offered` is parse_help_query_gpu's result; None (the help could not be read)
    asks for every field, as drivers up to the 595 branch all offer them.
    """
    if not offered:
        return QUERY_GPU_FIELDS
    fields = []
    for name in QUERY_GPU_FIELDS:
        replacement = REPLACEMENTS.get(name)
        if offered.get(name) and replacement in offered and not offered[replacement]:
            fields.append(replacement)
        elif name in offered and not offered[name]:
            fields.append(name)
    return tuple(fields)


def query_gpu_command(offered: Mapping[str, bool] | None) -> tuple[str, ...]:
    """The nvidia-smi command line that reads this driver's share of QUERY_GPU_FIELDS."""
    return ("nvidia-smi", "--query-gpu=" + ",".join(query_fields(offered)), QUERY_GPU_FORMAT)


def _query_gpu_shell() -> str:
    """query_gpu_command in POSIX sh, for the one-round-trip status probe.

    It asks --help-query-gpu which fields exist and takes a replacement where
    the driver offers one; a deprecated field without one is still asked for
    (sh cannot read the descriptions) and the parser keeps its notice as a
    marker. Without a readable help it asks for every field.
    """
    wanted = " ".join(dict.fromkeys([*QUERY_GPU_FIELDS, *REPLACEMENTS.values()]))
    drop = "".join(
        f'case "$f" in *,{new}*) f=$(echo "$f" | sed "s/,{old}//");; esac; '
        for old, new in REPLACEMENTS.items()
    )
    return (
        f"h=$(nvidia-smi --help-query-gpu 2>/dev/null); f=; for x in {wanted}; "
        'do case "$h" in *"\\"$x\\""*) f="$f,$x";; esac; done; '
        f"{drop}"
        f'[ -n "$f" ] || f=",{",".join(QUERY_GPU_FIELDS)}"; '
        f'nvidia-smi --query-gpu="${{f#,}}" {QUERY_GPU_FORMAT}'
    )


QUERY_GPU_SHELL = _query_gpu_shell()


# --- --query-gpu ------------------------------------------------------------------


def _header_field(cell: str) -> str:
    name = re.sub(r"\s*\[[^\]]*\]$", "", cell.strip())
    return _FIELD_ALIASES.get(name, name)


def parse_query_gpu(text: str, fields: Iterable[str] = QUERY_GPU_FIELDS) -> list[GpuRecord]:
    """Parse `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`.

    With a header the columns are taken from it (any field list works); without
    one they must be `fields`, in order.
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if not rows:
        return []
    expected = [_FIELD_ALIASES.get(f, f) for f in fields]
    header = [_header_field(cell) for cell in rows[0]]
    if "name" in header or "uuid" in header or header == expected:
        columns, data = header, rows[1:]
    else:
        columns, data = expected, rows
    records = []
    for number, row in enumerate(data, start=1):
        if len(row) != len(columns):
            raise NvidiaSmiParseError(
                f"row {number} has {len(row)} values for {len(columns)} fields: "
                f"{', '.join(row)[:200]!r} (nvidia-smi printed an error instead of CSV, or "
                f"the query used other fields than gpuprov's)"
            )
        records.append(_record(dict(zip(columns, row, strict=True))))
    return records


# --- header / --version -----------------------------------------------------------

# Up to the 595 branch: "Driver Version: 595.71.05   CUDA Version: 13.2" in the
# header, "DRIVER version : ..." / "CUDA Version : ..." in --version. The 610
# branch says "KMD Version" and "CUDA UMD Version" and leaves the old --version
# lines in place with a "Deprecated, see ..." notice, which is never a version:
# every pattern wants digits right after the colon.
_DRIVER_PATTERNS = (re.compile(r"(?:Driver|DRIVER|KMD) [Vv]ersion\s*:\s*(\d+(?:\.\d+)+)"),)
_CUDA_PATTERN = re.compile(r"CUDA (?:UMD )?[Vv]ersion\s*:?\s*(\d+\.\d+)")


# The driver's and CUDA's versions, for parse_driver_info; drivers before --version
# existed print them only in the plain table (PLAIN_COMMAND).
VERSION_COMMAND = ("nvidia-smi", "--version")
PLAIN_COMMAND = ("nvidia-smi",)


def parse_driver_info(text: str) -> DriverInfo:
    """Driver and supported CUDA version from plain `nvidia-smi` or `--version`."""
    for pattern in _DRIVER_PATTERNS:
        match = pattern.search(text)
        if match:
            cuda = _CUDA_PATTERN.search(text)
            return DriverInfo(match.group(1), cuda.group(1) if cuda else None)
    first = text.strip().splitlines()[0] if text.strip() else "(empty)"
    raise NvidiaSmiParseError(
        f"no driver version in nvidia-smi output starting {first!r}; "
        f"classify it with classify_failure() first"
    )


# --- -L ---------------------------------------------------------------------------

_LIST_GPU = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")
_LIST_MIG = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s+\(UUID:\s*([^)]+)\)\s*$")


LIST_COMMAND = ("nvidia-smi", "-L")


def parse_list(text: str) -> list[GpuRecord]:
    """Parse `nvidia-smi -L`: GPUs with index, name and UUID, and their MIG devices."""
    gpus: list[tuple[int, str, str, list[MigDevice]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        gpu = _LIST_GPU.match(line)
        if gpu:
            gpus.append((int(gpu.group(1)), gpu.group(2), gpu.group(3), []))
            continue
        mig = _LIST_MIG.match(line)
        if mig and gpus:
            gpus[-1][3].append(
                MigDevice(index=int(mig.group(2)), profile=mig.group(1), uuid=mig.group(3))
            )
            continue
        raise NvidiaSmiParseError(f"unexpected line in nvidia-smi -L output: {line.strip()!r}")
    return [
        GpuRecord(
            index=index,
            name=name,
            uuid=uuid,
            mig_enabled=True if migs else None,
            mig_devices=tuple(migs),
        )
        for index, name, uuid, migs in gpus
    ]


# --- --query-compute-apps ---------------------------------------------------------

# The processes holding a compute context on a GPU, one row per process and GPU,
# with host pids. The fields are those the captures in tests/fixtures were taken
# with, so the test bed's fake nvidia-smi, which replays exact command lines,
# answers the same command; the parser reads only what it needs, by header.
COMPUTE_APPS_COMMAND = (
    "nvidia-smi",
    "--query-compute-apps=timestamp,gpu_name,gpu_bus_id,gpu_serial,gpu_uuid,pid,process_name,"
    "used_gpu_memory",
    "--format=csv",
)
_COMPUTE_APPS_COLUMNS = ("pid", "process_name", "used_gpu_memory", "gpu_uuid")


@dataclass(frozen=True)
class ComputeProcess:
    """One process's compute context on one GPU (a process on two GPUs is two rows)."""

    pid: int
    process_name: str
    used_memory_mib: int | None
    gpu_uuid: str | None


def parse_compute_apps(text: str) -> list[ComputeProcess]:
    """Parse `nvidia-smi --query-compute-apps=...,pid,process_name,... --format=csv`.

    The header (always printed, also when no process runs) names the columns.
    nvidia-smi separates cells with ", " and quotes nothing, so a process name
    holding ", " spills into the next cells: the cells over the header's count
    go back into the name. A used memory nvidia-smi cannot tell ("[N/A]") is None.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise NvidiaSmiParseError("no output from --query-compute-apps, not even its header")
    header = [re.sub(r"\s*\[[^\]]*\]$", "", cell.strip()) for cell in lines[0].split(", ")]
    missing = [name for name in _COMPUTE_APPS_COLUMNS if name not in header]
    if missing:
        raise NvidiaSmiParseError(
            f"--query-compute-apps output without {', '.join(missing)} in its header: "
            f"{lines[0].strip()[:200]!r}"
        )
    name_at = header.index("process_name")
    processes = []
    for number, line in enumerate(lines[1:], start=1):
        cells = [cell.strip() for cell in line.split(", ")]
        spill = len(cells) - len(header)
        if spill < 0:
            raise NvidiaSmiParseError(
                f"row {number} has {len(cells)} values for {len(header)} fields: {line[:200]!r}"
            )
        cells[name_at : name_at + spill + 1] = [", ".join(cells[name_at : name_at + spill + 1])]
        row = dict(zip(header, cells, strict=True))
        if not row["pid"].isdigit():
            raise NvidiaSmiParseError(f"row {number}: expected a pid, got {row['pid']!r}")
        memory = row["used_gpu_memory"]
        processes.append(
            ComputeProcess(
                pid=int(row["pid"]),
                process_name=row["process_name"],
                used_memory_mib=None if _marker(memory) else _number(memory),
                gpu_uuid=None if _marker(row["gpu_uuid"]) else row["gpu_uuid"],
            )
        )
    return processes


# --- failures ---------------------------------------------------------------------


class DriverState(StrEnum):
    OK = "ok"
    NOT_INSTALLED = "not-installed"
    NOT_LOADED = "not-loaded"
    VERSION_MISMATCH = "version-mismatch"
    NO_DEVICES = "no-devices"
    FAILED = "failed"


@dataclass(frozen=True)
class DriverStatus:
    state: DriverState
    explanation: str
    detail: str = ""
    library_version: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is DriverState.OK


_COMMAND_MISSING = (127, None)


def classify_failure(rc: int | None, output: str) -> DriverStatus:
    """What nvidia-smi's exit status and output say about the driver.

    `rc` None (or 127) means the command was not found.
    """
    text = output.strip()
    detail = text.splitlines()[0] if text else ""
    lowered = text.lower()
    if rc in _COMMAND_MISSING or "command not found" in lowered:
        return DriverStatus(
            DriverState.NOT_INSTALLED,
            "nvidia-smi is not installed: no NVIDIA driver user-space on this host; "
            "install the driver (gpuprov's nvidia_driver role)",
            detail,
        )
    if "couldn't find libnvidia-ml.so" in lowered:
        return DriverStatus(
            DriverState.NOT_INSTALLED,
            "nvidia-smi is present but libnvidia-ml.so is not: the driver's user-space "
            "libraries are missing or half-removed; reinstall the driver packages",
            detail,
        )
    if "driver/library version mismatch" in lowered:
        library = re.search(r"NVML library version:\s*([\d.]+)", text)
        version = library.group(1) if library else None
        seen = f" (user-space NVML {version})" if version else ""
        return DriverStatus(
            DriverState.VERSION_MISMATCH,
            f"the loaded kernel module is not the installed user-space driver{seen}, "
            f"usually after a driver upgrade without reboot: reboot the host (or unload "
            f"and reload the nvidia modules), then hold the driver packages so unattended "
            f"upgrades cannot repeat it",
            detail,
            version,
        )
    if "couldn't communicate with the nvidia driver" in lowered:
        return DriverStatus(
            DriverState.NOT_LOADED,
            "the NVIDIA kernel module is not loaded: check `lsmod | grep nvidia` and "
            "`dmesg`; usual causes are nouveau holding the GPU (blacklist it, rebuild the "
            "initramfs, reboot), Secure Boot refusing the unsigned module (enroll the MOK "
            "key or sign it), or DKMS not built for the running kernel (install its headers)",
            detail,
        )
    if "no devices were found" in lowered:
        return DriverStatus(
            DriverState.NO_DEVICES,
            "the driver is loaded but sees no NVIDIA GPU: check `lspci | grep -i nvidia`; "
            "a GPU newer than the driver, a disabled PCIe slot/passthrough, or a GPU that "
            "failed to initialise (see `dmesg | grep NVRM`)",
            detail,
        )
    if "failed to initialize nvml: unknown error" in lowered:
        return DriverStatus(
            DriverState.FAILED,
            "NVML failed with 'Unknown Error': inside a container this is the GPU device "
            "access lost after `systemctl daemon-reload` (NVIDIA/nvidia-container-toolkit#48; "
            "recreate the container); on the host, check `dmesg | grep NVRM`",
            detail,
        )
    if "is not a valid field to query" in lowered:
        return DriverStatus(
            DriverState.FAILED,
            "this driver's nvidia-smi refused a field its own --help-query-gpu listed: "
            "compare `nvidia-smi --help-query-gpu` with the field named above",
            detail,
        )
    if rc == 0 and text:
        return DriverStatus(DriverState.OK, "nvidia-smi answered", detail)
    return DriverStatus(
        DriverState.FAILED,
        f"nvidia-smi failed (exit status {rc}): read its message and `dmesg | grep NVRM`",
        detail,
    )
