"""The host gates: facts about a host in, an ordered list of checks out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from .compat import (
    FORWARD_COMPAT_RULE,
    TOOLKIT_MIN_SAFE,
    ArchSupport,
    CompatError,
    Support,
    cuda_build_supports_cc,
    driver_supports_cuda,
    toolkit_findings,
)
from .cuda_env import ImageCuda
from .nvidia import DriverState, DriverStatus, GpuRecord
from .text_table import text_table
from .versions import VersionError, major_minor, parse_version


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    NA = "n/a"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": str(self.status), "reason": self.reason}


@dataclass(frozen=True)
class Workload:
    """What the sample workload inside a team-image container reported."""

    nvidia_smi_rc: int | None
    torch_ok: bool | None
    torch_error: str = ""
    # Why the container did not run at all (docker's message); empty when it ran.
    error: str = ""
    nvidia_smi_output: str = ""
    # Why the workload was deliberately not run (e.g. the image is not on the host yet).
    skipped: str = ""


@dataclass(frozen=True)
class HostFacts:
    """Everything the gates look at, gathered on the host by the caller.

    None means "not gathered"; the gate then says it could not verify.
    """

    driver: DriverStatus
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: tuple[GpuRecord, ...] = ()
    secure_boot: bool | None = None
    nouveau_loaded: bool | None = None
    nouveau_blacklisted: bool | None = None
    kernel_headers: bool | None = None
    kernel_release: str | None = None
    # Whether /lib/modules/<running kernel> holds an nvidia.ko (None: not gathered).
    nvidia_module_built: bool | None = None
    dev_nvidia: bool | None = None
    dev_nvidia_uvm: bool | None = None
    cgroup_version: int | None = None
    driver_packages_held: bool | None = None
    # None: not gathered (no dpkg); (): dpkg knows no driver package (.run install).
    driver_packages_installed: tuple[str, ...] | None = None
    nvidia_ctk_version: str | None = None
    nvidia_container_cli_version: str | None = None
    docker_running: bool | None = None
    docker_runtimes: tuple[str, ...] = ()
    docker_default_runtime: str | None = None
    # Runtimes /etc/docker/daemon.json names: differs from docker_runtimes until a restart.
    daemon_json_runtimes: tuple[str, ...] = ()
    cdi_specs: tuple[str, ...] = ()
    workload: Workload | None = None


@dataclass(frozen=True)
class HostExpectations:
    """What the inventory says this host should have."""

    gpu_required: bool = True
    gpu_count: int | None = None
    gpu_model: str | None = None


@dataclass(frozen=True)
class ImagePin:
    """The versions the team image promises (from the one image pin)."""

    # None for a CPU image (promises.cuda: none): no driver or arch gate applies.
    cuda: str | None
    torch: str
    cuda_build: str | None
    # An image whose wheels cover every GPU may knowingly rely on CUDA
    # minor-version compatibility; then a driver below the table warns, not fails.
    allow_minor_version_compat: bool = False
    # What the image itself declares (CUDA_VERSION, NVIDIA_REQUIRE_CUDA) when it
    # is on the host: the driver is checked against that, and a pin that says
    # otherwise is a finding.
    declared: ImageCuda | None = None


@dataclass(frozen=True)
class _Context:
    facts: HostFacts
    expect: HostExpectations
    image: ImagePin


def _no_gpu_reason(facts: HostFacts) -> str | None:
    """Why the host has no usable NVIDIA GPU, or None when it has one."""
    state = facts.driver.state
    if state is DriverState.NOT_INSTALLED:
        return "no NVIDIA driver installed"
    if state is DriverState.NO_DEVICES:
        return "the driver sees no NVIDIA GPU"
    if state is DriverState.OK and not facts.gpus:
        return "nvidia-smi lists no GPU"
    return None


# --- individual gates ----------------------------------------------------------
# Each judges one thing and returns its verdict; GATES below names and orders them.


def _says(status: Status, reason: str) -> Check:
    """A gate's verdict; verify_host gives it the gate's name."""
    return Check("", status, reason)


def _driver(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.driver.ok:
        cuda = f", supports CUDA {facts.cuda_version}" if facts.cuda_version else ""
        return _says(Status.OK, f"driver {facts.driver_version}{cuda}")
    hints = []
    if facts.driver.state is DriverState.NOT_LOADED:
        if facts.nouveau_loaded:
            hints.append("nouveau is loaded right now")
        if facts.secure_boot:
            hints.append("Secure Boot is on")
        if facts.kernel_headers is False:
            hints.append("headers for the running kernel are missing")
        if facts.nvidia_module_built is False:
            hints.append(f"no nvidia.ko is built for the running kernel {facts.kernel_release}")
    seen = f" [on this host: {'; '.join(hints)}]" if hints else ""
    return _says(Status.FAIL, f"{facts.driver.state}: {facts.driver.explanation}{seen}")


def _kernel_modules(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.nouveau_loaded:
        return _says(
            Status.FAIL,
            "nouveau is loaded and holds the GPU: blacklist it in "
            "/etc/modprobe.d, rebuild the initramfs and reboot",
        )
    if facts.nvidia_module_built is False and (
        facts.driver_packages_installed or not facts.driver.ok
    ):
        return _says(
            Status.FAIL,
            f"no nvidia kernel module is built for the running kernel {facts.kernel_release} "
            "(a kernel update without a DKMS rebuild): install "
            f"linux-headers-{facts.kernel_release}, run `dkms autoinstall` and load the module, "
            "or boot the kernel the driver was built for",
        )
    problems = []
    if facts.nouveau_blacklisted is False:
        problems.append("nouveau is not blacklisted (it can take the GPU at the next boot)")
    if facts.kernel_headers is False:
        problems.append(
            "no headers for the running kernel (DKMS cannot rebuild the "
            "module after a kernel update)"
        )
    if facts.secure_boot and not facts.driver.ok:
        problems.append("Secure Boot is on: the module must be signed with an enrolled key")
    if problems:
        return _says(Status.WARN, "; ".join(problems))
    unknown = [
        name
        for name, value in (
            ("nouveau", facts.nouveau_loaded),
            ("kernel headers", facts.kernel_headers),
        )
        if value is None
    ]
    if unknown:
        return _says(Status.WARN, f"not gathered: {', '.join(unknown)}")
    return _says(Status.OK, "nouveau not loaded, kernel headers present")


def _packages_held(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.driver_packages_held is None and facts.driver_packages_installed == ():
        return _says(
            Status.WARN,
            "no NVIDIA driver package installed by apt (a .run-installed driver "
            "cannot be held): install the driver from packages "
            "(nvidia_driver_manage) so it can be pinned and held",
        )
    if facts.driver_packages_held is None:
        return _says(Status.WARN, "not gathered")
    if facts.driver_packages_held:
        names = ", ".join(facts.driver_packages_installed or ())
        held = f"{names} held" if names else "held"
        return _says(Status.OK, f"{held} against unattended upgrades")
    return _says(
        Status.WARN,
        "not held: an unattended upgrade replaces the user-space driver under the "
        "running module ('Driver/library version mismatch' until reboot); "
        "apt-mark hold the driver packages",
    )


def _device_nodes(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.dev_nvidia is False:
        return _says(
            Status.FAIL,
            "no /dev/nvidia* device nodes: the driver is not initialised; run "
            "nvidia-smi once as root or enable nvidia-persistenced",
        )
    if facts.dev_nvidia_uvm is False:
        return _says(
            Status.FAIL,
            "/dev/nvidia-uvm is missing: nvidia-smi works without it but every "
            "CUDA program fails; load nvidia-uvm (nvidia-modprobe -u -c=0)",
        )
    if facts.dev_nvidia is None or facts.dev_nvidia_uvm is None:
        return _says(Status.WARN, "not gathered")
    return _says(Status.OK, "/dev/nvidia* and /dev/nvidia-uvm present")


def _pin_disagreement(image: ImagePin) -> str | None:
    """Why the pin's CUDA promise and the image's own declaration differ, or None."""
    declared = image.declared
    if declared is None or declared.cuda is None:
        return None
    fix = "re-pin the image (gpuprov image pin) so every gate checks what really runs"
    if image.cuda is None:
        return (
            f"the image declares {declared.source} but gpuprov_image.promises.cuda is none: {fix}"
        )
    try:
        if major_minor(declared.cuda) == major_minor(image.cuda):
            return None
    except VersionError as exc:
        return f"cannot compare the image's {declared.source} with the pin: {exc}"
    return (
        f"the image declares {declared.source} but gpuprov_image.promises.cuda is "
        f"{image.cuda}: {fix}"
    )


def _driver_vs_image(ctx: _Context) -> Check:
    check = _driver_vs_cuda(ctx)
    disagreement = _pin_disagreement(ctx.image)
    if disagreement:
        return _says(Status.FAIL, f"{disagreement}; {check.reason}")
    return check


def _driver_vs_cuda(ctx: _Context) -> Check:
    """The driver against the CUDA the image declares, else the one its pin promises."""
    facts, image = ctx.facts, ctx.image
    declared = image.declared.cuda if image.declared else None
    cuda = declared or image.cuda
    if cuda is None:
        return _says(Status.NA, "the team image is a CPU build (cuda: none)")
    if not facts.driver.ok or not facts.driver_version:
        return _says(Status.FAIL, "cannot compare: the driver did not answer")
    try:
        verdict = driver_supports_cuda(facts.driver_version, cuda, driver_cuda=facts.cuda_version)
    except (CompatError, VersionError) as exc:
        return _says(Status.FAIL, f"cannot verify: {exc}")
    where = f"in the team image ({image.declared.source})" if declared else "in the team image"
    if verdict.status is Support.OK and verdict.beyond:
        return _says(Status.WARN, f"{verdict.message} {where}; {verdict.beyond}")
    if verdict.status is Support.OK:
        return _says(Status.OK, f"{verdict.message} {where}")
    if verdict.status is Support.UNKNOWN:
        enforced = (
            f"; the container runtime enforces the image's {image.declared.requirement()} "
            f"when the CUDA workload starts"
            if image.declared and image.declared.required
            else ""
        )
        return _says(Status.WARN, f"{verdict.message}{enforced}")
    datacenter = not any("geforce" in gpu.name.lower() for gpu in facts.gpus)
    forward = f"; forward compatibility: {FORWARD_COMPAT_RULE}" if datacenter else ""
    reason = verdict.message.replace(f"CUDA {cuda}", f"CUDA {cuda} {where}", 1) + forward
    if verdict.status is Support.MINOR_VERSION_COMPAT and image.allow_minor_version_compat:
        return _says(Status.WARN, reason)
    return _says(Status.FAIL, reason)


def _per_gpu(ctx: _Context, judge: Callable[[GpuRecord], Check | None], ok_reason: str) -> Check:
    """One check over all GPUs: the worst GPU decides, every bad GPU is named."""
    results = [judge(gpu) for gpu in ctx.facts.gpus]
    bad = [r for r in results if r is not None]
    if not bad:
        return _says(Status.OK, ok_reason)
    status = worst(bad)
    reasons = [r.reason for r in bad if r.status is status]
    if status is Status.NA and len(bad) < len(results):
        return _says(Status.OK, ok_reason)
    return _says(status, "; ".join(reasons))


def _compute_capability(ctx: _Context) -> Check:
    image = ctx.image
    if image.cuda_build is None:
        return _says(
            Status.NA,
            "the team image is a CPU build: its torch has no GPU kernels",
        )

    def judge(gpu: GpuRecord) -> Check | None:
        if gpu.compute_capability is None:
            return _says(
                Status.WARN,
                f"{gpu.label()}: compute capability unknown (query it with "
                f"--query-gpu=compute_cap)",
            )
        try:
            verdict = cuda_build_supports_cc(
                image.cuda_build or "", gpu.compute_capability, image.torch
            )
        except (CompatError, VersionError) as exc:
            return _says(Status.FAIL, f"cannot verify: {exc}")
        if verdict.status is ArchSupport.NATIVE and not verdict.beyond:
            return None
        status = Status.FAIL if verdict.status is ArchSupport.UNSUPPORTED else Status.WARN
        beyond = f"; {verdict.beyond}" if verdict.beyond else ""
        return _says(status, f"{gpu.label()}: {verdict.message}{beyond}")

    ccs = sorted({gpu.compute_capability or "?" for gpu in ctx.facts.gpus})
    return _per_gpu(
        ctx,
        judge,
        f"compute capability {', '.join(ccs)} in torch {image.torch} {image.cuda_build} wheels",
    )


def _gpu_count(ctx: _Context) -> Check:
    found = len(ctx.facts.gpus)
    wanted = ctx.expect.gpu_count
    if wanted is None:
        return _says(Status.OK, f"{found} GPU(s); the inventory sets no count")
    if found == wanted:
        return _says(Status.OK, f"{found} GPU(s) as the inventory expects")
    return _says(
        Status.FAIL,
        f"{found} GPU(s) found, the inventory expects {wanted}: check `nvidia-smi -L`, "
        f"`lspci | grep -i nvidia` and `dmesg | grep NVRM` for a GPU that fell off "
        f"the bus, or fix the inventory",
    )


def _gpu_model(ctx: _Context) -> Check:
    wanted = ctx.expect.gpu_model
    names = sorted({gpu.name for gpu in ctx.facts.gpus})
    if wanted is None:
        return _says(Status.OK, f"{', '.join(names)}; the inventory sets no model")
    wrong = [gpu for gpu in ctx.facts.gpus if wanted.lower() not in gpu.name.lower()]
    if not wrong:
        return _says(Status.OK, f"{', '.join(names)} matches {wanted!r}")
    return _says(
        Status.FAIL,
        f"{', '.join(gpu.label() for gpu in wrong)} does not match the inventory's "
        f"{wanted!r}: fix the inventory or check the hardware",
    )


# Pre-Ampere GPUs retire pages, Ampere and later remap rows: a GPU with ECC
# on must let gpuprov read its ECC counters and one of the two families.
_ECC_COUNTERS = ("ecc_uncorrected_volatile", "ecc_uncorrected_aggregate")
_RETIREMENT = ("retired_pages_double_bit", "retired_pages_pending")
_REMAPPING = ("remapped_rows_uncorrectable", "remapped_rows_pending", "remapped_rows_failure")
_BY_HAND = "`nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER`"


def _unread(gpu: GpuRecord, attributes: tuple[str, ...]) -> list[str]:
    return [a for a in attributes if getattr(gpu, a) is None]


def _memory_unknowns(gpu: GpuRecord) -> str | None:
    """Which memory-health values of an ECC GPU could not be read, and why, or None."""
    missing = _unread(gpu, _ECC_COUNTERS)
    retirement, remapping = _unread(gpu, _RETIREMENT), _unread(gpu, _REMAPPING)
    if retirement and remapping:
        missing += retirement + remapping
    if not missing:
        return None
    said = sorted({gpu.markers.get(a, "not reported") for a in missing})
    mig = (
        " (with MIG enabled the driver does not report row remapping for the whole GPU)"
        if gpu.mig_enabled
        else ""
    )
    return (
        f"{gpu.label()}: memory health unknown: could not read {', '.join(missing)} "
        f"({', '.join(said)}){mig}; check by hand with {_BY_HAND}"
    )


def _memory_health(ctx: _Context) -> Check:
    def judge(gpu: GpuRecord) -> Check | None:
        faults = []
        for count, what in (
            (gpu.ecc_uncorrected_volatile, "since boot"),
            (gpu.ecc_uncorrected_aggregate, "lifetime"),
        ):
            if count:
                faults.append(f"{count} uncorrected ECC error(s) {what}")
        if gpu.retired_pages_pending:
            faults.append("page retirement pending")
        if gpu.remapped_rows_pending:
            faults.append("row remapping pending")
        if gpu.remapped_rows_failure:
            faults.append("row remapping failed")
        if faults:
            return _says(
                Status.FAIL,
                f"{gpu.label()}: {', '.join(faults)}: drain the host, reset the GPU "
                f"(or reboot) so pending retirements/remaps apply, and replace the "
                f"GPU if errors return",
            )
        denied = [f for f, m in gpu.markers.items() if "permission" in m.lower()]
        if denied:
            return _says(
                Status.WARN,
                f"{gpu.label()}: not allowed to read {', '.join(sorted(denied))}: "
                f"gather facts as root",
            )
        if gpu.ecc_enabled is None and gpu.ecc_uncorrected_volatile is None:
            return _says(Status.NA, f"{gpu.label()}: no ECC reporting on this GPU")
        if gpu.ecc_enabled is False:
            return _says(
                Status.WARN,
                f"{gpu.label()}: ECC is disabled, so memory errors go unreported: enable it "
                f"(`nvidia-smi -e 1`, then reset the GPU) unless the capacity matters more",
            )
        unknown = _memory_unknowns(gpu)
        return _says(Status.WARN, unknown) if unknown else None

    return _per_gpu(
        ctx,
        judge,
        "no uncorrected ECC errors, no pending page retirement or row remap",
    )


def _mig(ctx: _Context) -> Check:
    def judge(gpu: GpuRecord) -> Check | None:
        if (
            gpu.mig_pending is not None
            and gpu.mig_enabled is not None
            and gpu.mig_pending != gpu.mig_enabled
        ):
            return _says(
                Status.WARN,
                f"{gpu.label()}: MIG mode change pending: reset the GPU to apply it",
            )
        if gpu.mig_enabled and not gpu.mig_devices:
            return _says(
                Status.WARN,
                f"{gpu.label()}: MIG is enabled but no MIG devices exist, so CUDA "
                f"sees no device: create instances or disable MIG",
            )
        return None

    migs = sum(len(gpu.mig_devices) for gpu in ctx.facts.gpus)
    return _per_gpu(ctx, judge, f"{migs} MIG device(s)" if migs else "MIG not in use")


def _toolkit(ctx: _Context) -> Check:
    facts = ctx.facts
    found = [v for v in (facts.nvidia_ctk_version, facts.nvidia_container_cli_version) if v]
    if not found:
        return _says(
            Status.FAIL,
            "NVIDIA Container Toolkit not installed: `docker run --gpus` fails with "
            "'could not select device driver \"\" with capabilities: [[gpu]]'; "
            "install it (gpuprov's container_toolkit role)",
        )
    try:
        oldest = min(found, key=parse_version)
        findings = toolkit_findings(oldest)
    except VersionError as exc:
        return _says(Status.FAIL, f"cannot read the toolkit version: {exc}")
    if findings:
        cves = ", ".join(f"{a.cve} (fixed in {a.fixed_in})" for a in findings)
        return _says(
            Status.FAIL,
            f"security: toolkit {oldest} < {TOOLKIT_MIN_SAFE} allows container escape "
            f"to the host: {cves}; upgrade nvidia-container-toolkit",
        )
    return _says(Status.OK, f"toolkit {oldest} >= {TOOLKIT_MIN_SAFE}")


def _docker_runtime(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.docker_running is False:
        return _says(Status.FAIL, "docker is not running: start it (systemctl start docker)")
    if facts.docker_running is None:
        return _says(Status.WARN, "not gathered: docker info was not read")
    if "nvidia" not in facts.docker_runtimes:
        known = ", ".join(facts.docker_runtimes) or "none"
        if "nvidia" in facts.daemon_json_runtimes:
            return _says(
                Status.FAIL,
                f"/etc/docker/daemon.json names the 'nvidia' runtime but the running "
                f"docker does not have it (runtimes: {known}): restart docker "
                f"(restart required)",
            )
        return _says(
            Status.FAIL,
            f"no 'nvidia' runtime in docker (runtimes: {known}): run "
            f"`nvidia-ctk runtime configure --runtime=docker` (it merges into "
            f"/etc/docker/daemon.json) and restart docker",
        )
    default = facts.docker_default_runtime or "runc"
    cdi = f"{len(facts.cdi_specs)} CDI spec(s)" if facts.cdi_specs else "no CDI specs"
    return _says(Status.OK, f"'nvidia' runtime configured (default: {default}; {cdi})")


def _cgroups(ctx: _Context) -> Check:
    facts = ctx.facts
    if facts.cgroup_version == 2:
        return _says(Status.OK, "cgroup v2")
    if facts.cgroup_version == 1:
        return _says(
            Status.WARN,
            "cgroup v1 (legacy): containers can lose GPU access after "
            "`systemctl daemon-reload` (NVIDIA/nvidia-container-toolkit#48)",
        )
    return _says(Status.WARN, "cgroup version not gathered")


def _workload(ctx: _Context) -> Check:
    facts = ctx.facts
    run = facts.workload
    if run is None:
        return _says(
            Status.WARN,
            "not run: only a real CUDA operation in a container proves the stack "
            "(nvidia-smi alone can pass while /dev/nvidia-uvm is missing)",
        )
    if run.skipped:
        return _says(Status.WARN, f"not run: {run.skipped}")
    if run.error:
        return _says(Status.FAIL, f"the workload container did not run: {run.error}")
    cuda_failed = (
        f"; CUDA operation failed: {run.torch_error}"
        if run.torch_ok is False and run.torch_error
        else ""
    )
    if run.nvidia_smi_rc != 0:
        said = f": {run.nvidia_smi_output.splitlines()[0]}" if run.nvidia_smi_output else ""
        return _says(
            Status.FAIL,
            f"nvidia-smi failed in the container (exit status {run.nvidia_smi_rc}"
            f"{said}): the toolkit/runtime does not give the container the GPU"
            f"{cuda_failed}",
        )
    if run.torch_ok is None:
        return _says(Status.WARN, "nvidia-smi ran in the container; torch matmul not run")
    if not run.torch_ok:
        error = f" ({run.torch_error})" if run.torch_error else ""
        return _says(
            Status.FAIL,
            f"nvidia-smi passed in the container but the torch CUDA matmul failed"
            f"{error}: likely /dev/nvidia-uvm missing or not passed to the "
            f"container, or the wheel lacks this GPU's architecture",
        )
    return _says(Status.OK, "nvidia-smi and a torch CUDA matmul ran in the container")


# --- assembly ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    name: str
    judge: Callable[[_Context], Check]
    # Judges the GPUs themselves: fails outright where the host has none.
    needs_gpus: bool = False


GATES = (
    Gate("nvidia driver", _driver),
    Gate("kernel modules", _kernel_modules),
    Gate("driver packages held", _packages_held),
    Gate("device nodes", _device_nodes),
    Gate("driver vs image CUDA", _driver_vs_image),
    Gate("gpu count", _gpu_count, needs_gpus=True),
    Gate("gpu model", _gpu_model, needs_gpus=True),
    Gate("compute capability", _compute_capability, needs_gpus=True),
    Gate("gpu memory health", _memory_health, needs_gpus=True),
    Gate("mig", _mig, needs_gpus=True),
    Gate("container toolkit", _toolkit),
    Gate("docker gpu runtime", _docker_runtime),
    Gate("cgroups", _cgroups),
    Gate("cuda workload", _workload),
)


def verify_host(facts: HostFacts, expect: HostExpectations, image: ImagePin) -> list[Check]:
    """Run every gate, in GATES' order, for one host."""
    missing = _no_gpu_reason(facts)
    if missing is not None and not expect.gpu_required:
        reason = f"no NVIDIA GPU ({missing}); allowed by the inventory"
        return [Check(gate.name, Status.NA, reason) for gate in GATES]
    ctx = _Context(facts, expect, image)
    absent = f"the inventory requires a GPU but {missing}"
    return [
        Check(gate.name, Status.FAIL, absent)
        if gate.needs_gpus and missing is not None
        else replace(gate.judge(ctx), name=gate.name)
        for gate in GATES
    ]


_SEVERITY = {Status.NA: 0, Status.OK: 1, Status.WARN: 2, Status.FAIL: 3}


def worst(checks: Iterable[Check]) -> Status:
    """The status that decides for the whole list (fail > warn > ok > n/a)."""
    return max((c.status for c in checks), key=_SEVERITY.__getitem__, default=Status.NA)


def render_table(checks: Iterable[Check]) -> str:
    """A fixed-width table: check, status, reason."""
    return text_table(("CHECK", "STATUS", "REASON"), [(c.name, c.status, c.reason) for c in checks])
