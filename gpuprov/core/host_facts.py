"""Raw observations of a host in, the gates' HostFacts (and a JSON report) out.

The `gpuprov_host_facts` module gathers text (command output, file contents)
on the host and hands it here unparsed, so the CLI's Fabric probes and the
Ansible module read a host the same way. Pure: strings in, data out.

A raw command result is `{"rc": int | None, "out": str}`; rc None means the
command is not on the host (data, not an error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from . import docker_config
from .cuda_env import image_cuda
from .image_pin import image_environment
from .nvidia import (
    HELP_QUERY_GPU,
    LIST_COMMAND,
    VERSION_COMMAND,
    DriverState,
    DriverStatus,
    GpuRecord,
    NvidiaSmiParseError,
    classify_failure,
    parse_driver_info,
    parse_help_query_gpu,
    parse_list,
    parse_query_gpu,
    query_gpu_command,
)
from .torch_matrix import CPU_BUILD, build_for_cuda_version, cuda_build_of, no_cuda
from .verify import Check, HostExpectations, HostFacts, ImagePin, Status, Workload, worst

REPORT_SCHEMA = 1

# Packages that carry the user-space driver or the kernel module, on NVIDIA's
# CUDA repository and Debian/Ubuntu: an unattended upgrade of any of them
# under a loaded module gives "Driver/library version mismatch".
DRIVER_PACKAGE_PATTERN = re.compile(
    r"^(nvidia-driver(-\S+)?|nvidia-open(-\S+)?|cuda-drivers(-\S+)?|nvidia-kernel-\S+|"
    r"nvidia-dkms-\S+|nvidia-headless-\S+|nvidia-utils-\S+|libnvidia-compute-\S+|"
    r"nvidia-kernel-dkms|nvidia-smi|libnvidia-ml1|nvidia-modprobe)$"
)

WORKLOAD_MARKER = "gpuprov_workload"


# --- single observations --------------------------------------------------------


def _out(result: Mapping[str, Any] | None) -> str:
    return str((result or {}).get("out") or "")


def _rc(result: Mapping[str, Any] | None) -> int | None:
    if not result:
        return None
    rc = result.get("rc")
    return None if rc is None else int(rc)


CTK_VERSION_COMMAND = ("nvidia-ctk", "--version")


def ctk_version(result: Mapping[str, Any] | None) -> str | None:
    """`nvidia-ctk --version`: "NVIDIA Container Toolkit CLI version 1.17.8"."""
    if _rc(result) != 0:
        return None
    match = re.search(r"Container Toolkit CLI version\s+v?([\d.]+)", _out(result))
    return match.group(1) if match else None


CONTAINER_CLI_VERSION_COMMAND = ("nvidia-container-cli", "--version")


def container_cli_version(result: Mapping[str, Any] | None) -> str | None:
    """`nvidia-container-cli --version`: "cli-version: 1.17.8"."""
    if _rc(result) != 0:
        return None
    match = re.search(r"cli-version:\s*v?([\d.]+)", _out(result))
    return match.group(1) if match else None


def loaded_modules(proc_modules: str | None) -> frozenset[str] | None:
    """Module names from /proc/modules (first column)."""
    if proc_modules is None:
        return None
    return frozenset(line.split()[0] for line in proc_modules.splitlines() if line.strip())


def nouveau_blacklisted(modprobe_files: Mapping[str, str] | None) -> bool | None:
    """Whether a modprobe.d file keeps nouveau from loading at boot."""
    if modprobe_files is None:
        return None
    for text in modprobe_files.values():
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if words[:2] == ["blacklist", "nouveau"]:
                return True
            if words[:2] == ["install", "nouveau"] and words[2:3] in (
                ["/bin/false"],
                ["/bin/true"],
            ):
                return True
    return False


def nvidia_module_built(files: Iterable[str] | None) -> bool | None:
    """Whether the running kernel's module tree holds nvidia.ko (maybe compressed)."""
    if files is None:
        return None
    return any(re.fullmatch(r"nvidia\.ko(\.\w+)?", name.rsplit("/", 1)[-1]) for name in files)


def secure_boot(efivar_hex: str | None) -> bool | None:
    """The SecureBoot EFI variable: 4 bytes of attributes, then 1 (on) or 0 (off)."""
    if not efivar_hex:
        return None
    try:
        data = bytes.fromhex(efivar_hex)
    except ValueError:
        return None
    return data[4] == 1 if len(data) >= 5 else None


def cgroup_version(mounts: str | None) -> int | None:
    """cgroup v2 when /sys/fs/cgroup is a cgroup2 mount, v1 when cgroup mounts exist."""
    if mounts is None:
        return None
    found = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        where, fstype = fields[1], fields[2]
        if fstype == "cgroup2" and where == "/sys/fs/cgroup":
            return 2
        if fstype == "cgroup":
            found = 1
    return found


# Every package named like a driver part, installed or not, with its status letters.
DRIVER_PACKAGES_COMMAND = (
    "dpkg-query", "-W", "--showformat=${Package} ${db:Status-Abbrev}\n",
    "nvidia-*", "libnvidia-*", "cuda-drivers*",
)  # fmt: skip


def driver_packages(dpkg_installed: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    """Installed NVIDIA driver packages from `dpkg-query -W -f '${Package} ${db:Status-Abbrev}'`."""
    if _rc(dpkg_installed) is None:
        return None
    names = []
    for line in _out(dpkg_installed).splitlines():
        parts = line.split()
        # Status-Abbrev: desired state (i install, h hold, ...), then the state ("i" installed).
        installed = len(parts) >= 2 and parts[1][1:2] == "i"
        if installed and DRIVER_PACKAGE_PATTERN.match(parts[0]):
            names.append(parts[0])
    return tuple(sorted(names))


HELD_PACKAGES_COMMAND = ("apt-mark", "showhold")


def held_packages(showhold: Mapping[str, Any] | None) -> frozenset[str] | None:
    """`apt-mark showhold`: one held package per line."""
    if _rc(showhold) != 0:
        return None
    return frozenset(line.strip() for line in _out(showhold).splitlines() if line.strip())


# The commands whose output host_facts() reads, by their key in the raw
# observations; the GPU query follows from the help's answer (gpu_query_command),
# and PLAIN_COMMAND runs only where needs_plain_header() says the driver predates
# --version.
COMMANDS: Mapping[str, tuple[str, ...]] = {
    "nvidia_smi_help": HELP_QUERY_GPU,
    "nvidia_smi_version": VERSION_COMMAND,
    "nvidia_smi_list": LIST_COMMAND,
    "nvidia_ctk_version": CTK_VERSION_COMMAND,
    "nvidia_container_cli_version": CONTAINER_CLI_VERSION_COMMAND,
    "dpkg_driver_packages": DRIVER_PACKAGES_COMMAND,
    "apt_showhold": HELD_PACKAGES_COMMAND,
}


def daemon_json(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """/etc/docker/daemon.json as a dict, or (None, why) when it is unreadable."""
    try:
        return docker_config.load(text), None
    except docker_config.DaemonJsonError as error:
        return None, str(error)


def docker_runtimes(info: Mapping[str, Any] | None) -> tuple[tuple[str, ...], str | None]:
    """Runtimes and default runtime from `docker info` (docker_host_info's host_info)."""
    if not info:
        return (), None
    return tuple(sorted((info.get("Runtimes") or {}).keys())), info.get("DefaultRuntime")


def docker_error(message: str) -> str:
    """The daemon's own words from a Docker API error (drop the request URL around them)."""
    found = re.search(
        r'(?:Internal Server Error|Bad Request|Not Found|Conflict) \("(.*)"\)\s*$',
        message.strip(),
        re.DOTALL,
    )
    return found.group(1) if found else message.strip()


def workload_skip(
    gpu_present: bool,
    enabled: bool,
    docker_host: str,
    docker_answers: bool,
    image: str,
    image_on_host: bool | None = None,
    check_mode: bool = False,
    pull: bool = True,
    pull_error: str | None = None,
) -> str:
    """Why the GPU workload does not run on the host, or '' when it runs.

    Asked twice: before the pull (``image_on_host`` None: nothing known of the
    image yet) to decide whether to pull, and after it with what the host holds.
    """
    if not enabled:
        return "disabled by host_verify_workload: false"
    if not gpu_present:
        return "no GPU answered nvidia-smi on the host"
    if not docker_answers:
        return f"Docker does not answer at {docker_host}"
    if not image.strip():
        return (
            "the team image is built on the hosts and has no digest: run playbooks/image.yml, "
            "then playbooks/verify.yml, or set host_verify_image"
        )
    if image_on_host is False:
        missing = f"the team image {image.strip()} is not on the host and "
        if check_mode:
            return missing + "check mode does not pull it"
        if not pull:
            return missing + "host_verify_pull_image is false"
        if pull_error is not None:
            return missing + f"pulling it failed: {pull_error or 'unknown error'}"
    return ""


def probe_result(skipped: str, container: Mapping[str, Any] | None) -> dict[str, Any]:
    """What workload() reads, from the skip reason and docker_container's registered result."""
    if skipped:
        return {"skipped": skipped}
    container = container or {}
    started = "status" in container
    return {
        "started": started,
        "error": "" if started else str(container.get("msg") or "unknown error"),
        "output": str((container.get("container") or {}).get("Output") or ""),
    }


def workload(probe: Mapping[str, Any] | None) -> Workload | None:
    """What the workload container reported.

    `probe` is {"started": bool, "error": str, "output": str}, or {"skipped":
    why} when it was deliberately not run: error is why the container did not
    start; output is its stdout, whose last JSON line carrying WORKLOAD_MARKER
    is the probe's result. None: the workload was not run at all.
    """
    if probe is None:
        return None
    if probe.get("skipped"):
        return Workload(nvidia_smi_rc=None, torch_ok=None, skipped=str(probe["skipped"]))
    if not probe.get("started", True):
        return Workload(
            nvidia_smi_rc=None,
            torch_ok=None,
            error=docker_error(str(probe.get("error") or "unknown error")),
        )
    found: dict[str, Any] | None = None
    for line in str(probe.get("output") or "").splitlines():
        line = line.strip()
        if line.startswith("{") and WORKLOAD_MARKER in line:
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
    if found is None:
        tail = str(probe.get("output") or "").strip()[-300:] or "(no output)"
        return Workload(
            nvidia_smi_rc=None, torch_ok=None, error=f"the probe printed no result: {tail}"
        )
    return Workload(
        nvidia_smi_rc=found.get("nvidia_smi_rc"),
        torch_ok=found.get("torch_ok"),
        torch_error=str(found.get("torch_error") or ""),
        nvidia_smi_output=str(found.get("nvidia_smi") or ""),
    )


# --- the whole host -------------------------------------------------------------


def _driver(
    raw: Mapping[str, Any],
) -> tuple[DriverStatus, tuple[GpuRecord, ...], str | None, str | None]:
    query = raw.get("nvidia_smi_query")
    status = classify_failure(_rc(query), _out(query))
    gpus: tuple[GpuRecord, ...] = ()
    version = cuda = None
    if status.ok:
        try:
            gpus = tuple(parse_query_gpu(_out(query)))
        except NvidiaSmiParseError as exc:
            status = DriverStatus(
                DriverState.FAILED,
                f"nvidia-smi answered but gpuprov cannot read it: {exc}",
                status.detail,
            )
    gpus = _with_mig_devices(gpus, raw.get("nvidia_smi_list"))
    for key in ("nvidia_smi_version", "nvidia_smi_plain"):
        result = raw.get(key)
        if _rc(result) == 0:
            try:
                info = parse_driver_info(_out(result))
            except NvidiaSmiParseError:
                continue
            version, cuda = info.driver_version, info.cuda_version
            break
    if version is None and gpus:
        version = gpus[0].driver_version
    return status, gpus, version, cuda


def _with_mig_devices(
    gpus: tuple[GpuRecord, ...], listing: Mapping[str, Any] | None
) -> tuple[GpuRecord, ...]:
    """--query-gpu has no MIG devices; `nvidia-smi -L` lists them under their GPU's UUID."""
    if not gpus or _rc(listing) != 0:
        return gpus
    try:
        listed = {g.uuid: g.mig_devices for g in parse_list(_out(listing)) if g.uuid}
    except NvidiaSmiParseError:
        return gpus
    return tuple(replace(g, mig_devices=listed[g.uuid]) if listed.get(g.uuid) else g for g in gpus)


def gpu_query_command(help_result: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The --query-gpu command for the fields `nvidia-smi --help-query-gpu` offered."""
    offered = parse_help_query_gpu(_out(help_result)) if _rc(help_result) == 0 else None
    return query_gpu_command(offered)


def needs_plain_header(raw: Mapping[str, Any]) -> bool:
    """Whether `nvidia-smi --version` gave no driver version (older drivers lack it)."""
    result = raw.get("nvidia_smi_version")
    if _rc(result) != 0:
        return _rc(raw.get("nvidia_smi_query")) == 0
    try:
        parse_driver_info(_out(result))
    except NvidiaSmiParseError:
        return True
    return False


def host_facts(
    raw: Mapping[str, Any],
    docker_info: Mapping[str, Any] | None = None,
    probe: Mapping[str, Any] | None = None,
) -> HostFacts:
    """HostFacts from the module's raw observations, docker info and the workload probe."""
    status, gpus, version, cuda = _driver(raw)
    modules = loaded_modules(raw.get("proc_modules"))
    dev = raw.get("dev_nodes")
    installed = driver_packages(raw.get("dpkg_driver_packages"))
    held = held_packages(raw.get("apt_showhold"))
    if installed is None or held is None or not installed:
        packages_held = None
    else:
        packages_held = all(name in held for name in installed)
    daemon, _ = daemon_json(raw.get("daemon_json"))
    runtimes, default = docker_runtimes(docker_info)
    return HostFacts(
        driver=status,
        driver_version=version,
        cuda_version=cuda,
        gpus=gpus,
        secure_boot=secure_boot(raw.get("secure_boot_efivar")),
        nouveau_loaded=None if modules is None else "nouveau" in modules,
        nouveau_blacklisted=nouveau_blacklisted(raw.get("modprobe_d")),
        kernel_headers=raw.get("kernel_headers"),
        kernel_release=raw.get("kernel_release"),
        nvidia_module_built=nvidia_module_built(raw.get("kernel_nvidia_modules")),
        dev_nvidia=None
        if dev is None
        else any(re.fullmatch(r"nvidia(\d+|ctl)", name) for name in dev),
        dev_nvidia_uvm=None if dev is None else "nvidia-uvm" in dev,
        cgroup_version=cgroup_version(raw.get("mounts")),
        driver_packages_held=packages_held,
        driver_packages_installed=installed,
        nvidia_ctk_version=ctk_version(raw.get("nvidia_ctk_version")),
        nvidia_container_cli_version=container_cli_version(raw.get("nvidia_container_cli_version")),
        docker_running=docker_info is not None and bool(docker_info),
        docker_runtimes=runtimes,
        docker_default_runtime=default,
        daemon_json_runtimes=tuple(sorted(((daemon or {}).get("runtimes") or {}).keys())),
        cdi_specs=tuple(raw.get("cdi_specs") or ()),
        workload=workload(probe),
    )


def gpu_present(raw: Mapping[str, Any]) -> bool:
    """Whether nvidia-smi answered with at least one GPU (decides if a workload can run)."""
    status, gpus, _, _ = _driver(raw)
    return status.ok and bool(gpus)


# --- inventory --------------------------------------------------------------------


def expectations(gpu: Mapping[str, Any] | None) -> HostExpectations:
    """HostExpectations from the host's `gpuprov_gpu`."""
    gpu = gpu or {}
    return HostExpectations(
        gpu_required=bool(gpu.get("required", True)),
        gpu_count=gpu.get("count"),
        gpu_model=gpu.get("model"),
    )


def cuda_build(torch: str, cuda: str | None) -> str | None:
    """The PyTorch CUDA build ("cu126") of the image: torch's local version, else its CUDA."""
    local = cuda_build_of(torch)
    if local is not None:
        return None if local == CPU_BUILD else local
    # A build outside TORCH_CUDA_BUILDS stays as named: the gates then say they
    # cannot verify it, instead of guessing a neighbour.
    return None if no_cuda(cuda) else build_for_cuda_version(str(cuda))


class PromisesError(ValueError):
    """The pin's promises lack what the gates judge a host by."""


def gate_pin(
    promises: Mapping[str, Any],
    allow_minor_version_compat: bool = False,
    image: Mapping[str, Any] | None = None,
) -> ImagePin:
    """What the gates judge a host against: `gpuprov_image.promises` (cuda "none": a CPU
    image), and the CUDA the image's own environment declares (`docker image inspect`),
    which beats the pin's, because the image is what runs."""
    if "torch" not in promises:
        raise PromisesError(
            "gpuprov_image.promises lacks 'torch': pin the image's versions in group_vars "
            "(see docs/verify.md)"
        )
    torch = str(promises["torch"])
    cuda = str(promises.get("cuda") or "none")
    build = cuda_build(torch, cuda)
    return ImagePin(
        cuda=None if cuda == "none" or build is None else cuda,
        torch=torch.partition("+")[0],
        cuda_build=build,
        allow_minor_version_compat=allow_minor_version_compat,
        declared=image_cuda(image_environment(image or {})),
    )


# --- report -----------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    return value


def facts_summary(facts: HostFacts) -> dict[str, Any]:
    """HostFacts as plain JSON data."""
    return _jsonable(asdict(facts))


def failures(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status is Status.FAIL]


def failure_message(host: str, checks: Sequence[Check]) -> str:
    """One line per failed check: what failed and what to do."""
    failed = failures(checks)
    lines = [f"{host}: {len(failed)} check(s) failed:"]
    lines += [f"- {c.name}: {c.reason}" for c in failed]
    return "\n".join(lines)


def report(
    host: str,
    checks: Sequence[Check],
    facts: HostFacts,
    pin: ImagePin,
    promises: Mapping[str, Any],
    expect: HostExpectations,
) -> dict[str, Any]:
    """The JSON report of one host (deterministic: no timestamps, so reruns do not change it)."""
    return {
        "schema": REPORT_SCHEMA,
        "host": host,
        "status": str(worst(checks)),
        "checks": [c.to_dict() for c in checks],
        "failed": [c.name for c in failures(checks)],
        "expected": asdict(expect),
        "image_promises": _jsonable(dict(promises)),
        "image_declares": asdict(pin.declared) if pin.declared else None,
        "facts": facts_summary(facts),
    }
