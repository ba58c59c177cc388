"""Host gates: healthy host passes, each fault fails with an actionable reason."""

from __future__ import annotations

import dataclasses
import json

from support.captures import FIXTURES, H100, MIG, RTX_4080, first_section

from gpuprov.core.nvidia import (
    DriverState,
    classify_failure,
    parse_driver_info,
    parse_query_gpu,
)
from gpuprov.core.verify import (
    Check,
    HostExpectations,
    HostFacts,
    ImagePin,
    Status,
    Workload,
    render_table,
    verify_host,
    worst,
)

IMAGE = ImagePin(cuda="12.6", torch="2.7.1", cuda_build="cu126")
EXPECT = HostExpectations(gpu_required=True, gpu_count=1, gpu_model="H100")


def healthy_h100() -> HostFacts:
    info = parse_driver_info(first_section(H100, "nvidia-smi --version"))
    gpus = tuple(parse_query_gpu(first_section(H100, "nvidia-smi --query-gpu=")))
    return HostFacts(
        driver=classify_failure(0, "GPU 0: NVIDIA H100 80GB HBM3"),
        driver_version=info.driver_version,
        cuda_version=info.cuda_version,
        gpus=gpus,
        secure_boot=False,
        nouveau_loaded=False,
        nouveau_blacklisted=True,
        kernel_headers=True,
        dev_nvidia=True,
        dev_nvidia_uvm=True,
        cgroup_version=2,
        driver_packages_held=True,
        nvidia_ctk_version="1.19.1",
        nvidia_container_cli_version="1.19.1",
        docker_running=True,
        docker_runtimes=("io.containerd.runc.v2", "nvidia", "runc"),
        docker_default_runtime="runc",
        cdi_specs=("/etc/cdi/nvidia.yaml",),
        workload=Workload(nvidia_smi_rc=0, torch_ok=True),
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_healthy_h100_with_cu126_image_passes_every_gate():
    checks = verify_host(healthy_h100(), EXPECT, IMAGE)
    assert [c.status for c in checks] == [Status.OK] * len(checks), render_table(checks)
    named = by_name(checks)
    assert "590.48.01" in named["nvidia driver"].reason
    assert named["driver vs image CUDA"].reason == (
        "driver 590.48.01 >= 560.28.03 needed by CUDA 12.6 in the team image"
    )
    assert "9.0" in named["compute capability"].reason
    assert worst(checks) is Status.OK


def test_checks_come_in_a_fixed_order():
    names = [c.name for c in verify_host(healthy_h100(), EXPECT, IMAGE)]
    assert names == [
        "nvidia driver",
        "kernel modules",
        "driver packages held",
        "device nodes",
        "driver vs image CUDA",
        "gpu count",
        "gpu model",
        "compute capability",
        "gpu memory health",
        "mig",
        "container toolkit",
        "docker gpu runtime",
        "cgroups",
        "cuda workload",
    ]


def test_old_driver_for_the_image_cuda_fails_naming_both_versions():
    facts = dataclasses.replace(healthy_h100(), driver_version="535.104.05", cuda_version="12.2")
    image = ImagePin(cuda="12.4", torch="2.5.1", cuda_build="cu124")
    check = by_name(verify_host(facts, EXPECT, image))["driver vs image CUDA"]
    assert check.status is Status.FAIL
    assert check.reason.startswith(
        "driver 535.104.05 < 550.54.14 needed by CUDA 12.4 in the team image"
    )
    assert "minor-version compatibility" in check.reason
    assert "pin an image built for cu121" in check.reason
    assert "data-center GPUs" in check.reason


def test_minor_version_compat_warns_when_the_image_pin_accepts_it():
    facts = dataclasses.replace(healthy_h100(), driver_version="535.104.05", cuda_version="12.2")
    image = ImagePin(
        cuda="12.4", torch="2.5.1", cuda_build="cu124", allow_minor_version_compat=True
    )
    assert by_name(verify_host(facts, EXPECT, image))["driver vs image CUDA"].status is Status.WARN


def test_driver_below_the_compat_floor_fails_even_when_accepted():
    facts = dataclasses.replace(healthy_h100(), driver_version="470.239.06", cuda_version="11.4")
    image = dataclasses.replace(IMAGE, allow_minor_version_compat=True)
    check = by_name(verify_host(facts, EXPECT, image))["driver vs image CUDA"]
    assert check.status is Status.FAIL
    assert "floor 525.60.13" in check.reason


def _toolkit_check(version: str) -> Check:
    facts = dataclasses.replace(
        healthy_h100(), nvidia_ctk_version=version, nvidia_container_cli_version=version
    )
    return by_name(verify_host(facts, EXPECT, IMAGE))["container toolkit"]


def test_toolkit_1_17_4_is_a_security_failure_naming_the_cve():
    check = _toolkit_check("1.17.4")
    assert check.status is Status.FAIL
    assert check.reason.startswith("security:")
    assert "CVE-2025-23266" in check.reason
    assert "CVE-2025-23359" not in check.reason
    assert "CVE-2026-24260 (fixed in 1.19.1)" in check.reason
    assert "< 1.19.1" in check.reason


def test_toolkit_1_19_0_is_exposed_to_the_2026_race():
    check = _toolkit_check("1.19.0")
    assert check.status is Status.FAIL
    assert check.reason.endswith(
        "CVE-2026-24260 (fixed in 1.19.1); upgrade nvidia-container-toolkit"
    )


def test_toolkit_takes_the_older_of_its_two_versions():
    facts = dataclasses.replace(healthy_h100(), nvidia_container_cli_version="1.16.1")
    check = by_name(verify_host(facts, EXPECT, IMAGE))["container toolkit"]
    assert check.status is Status.FAIL
    assert "CVE-2024-0132" in check.reason


def test_no_toolkit_fails():
    facts = dataclasses.replace(
        healthy_h100(), nvidia_ctk_version=None, nvidia_container_cli_version=None
    )
    check = by_name(verify_host(facts, EXPECT, IMAGE))["container toolkit"]
    assert check.status is Status.FAIL
    assert "not installed" in check.reason
    assert "could not select device driver" in check.reason


def test_uncorrected_ecc_errors_fail():
    facts = healthy_h100()
    sick = dataclasses.replace(facts.gpus[0], ecc_uncorrected_volatile=2)
    checks = verify_host(dataclasses.replace(facts, gpus=(sick,)), EXPECT, IMAGE)
    check = by_name(checks)["gpu memory health"]
    assert check.status is Status.FAIL
    assert "GPU 0 (NVIDIA H100 80GB HBM3): 2 uncorrected ECC error(s) since boot" in check.reason
    assert worst(checks) is Status.FAIL


def test_pending_row_remap_and_page_retirement_fail():
    facts = healthy_h100()
    sick = dataclasses.replace(
        facts.gpus[0], remapped_rows_pending=True, retired_pages_pending=True
    )
    check = by_name(verify_host(dataclasses.replace(facts, gpus=(sick,)), EXPECT, IMAGE))[
        "gpu memory health"
    ]
    assert check.status is Status.FAIL
    assert "row remapping pending" in check.reason
    assert "page retirement pending" in check.reason


def test_geforce_without_ecc_reports_memory_health_not_applicable():
    capture = RTX_4080
    lines = capture.read_text().splitlines()
    query = "# $ nvidia-smi --query-gpu="
    start = next(i for i, line in enumerate(lines) if line.startswith(query))
    gpus = tuple(parse_query_gpu("\n".join(lines[start + 2 : start + 4])))
    facts = dataclasses.replace(
        healthy_h100(), gpus=gpus, driver_version="595.71.05", cuda_version="13.2"
    )
    checks = by_name(verify_host(facts, HostExpectations(gpu_count=1), IMAGE))
    assert checks["gpu memory health"].status is Status.NA
    assert "no ECC reporting" in checks["gpu memory health"].reason
    assert checks["compute capability"].status is Status.OK


def test_gpu_not_required_and_absent_gives_explicit_not_applicable_rows():
    facts = HostFacts(driver=classify_failure(127, ""), nvidia_ctk_version=None)
    checks = verify_host(facts, HostExpectations(gpu_required=False), IMAGE)
    assert checks
    assert {c.status for c in checks} == {Status.NA}
    assert all(
        c.reason == "no NVIDIA GPU (no NVIDIA driver installed); allowed by the inventory"
        for c in checks
    )
    assert worst(checks) is Status.NA


def test_gpu_required_but_absent_fails():
    facts = HostFacts(driver=classify_failure(6, "No devices were found"))
    checks = by_name(verify_host(facts, EXPECT, IMAGE))
    assert checks["nvidia driver"].status is Status.FAIL
    assert checks["nvidia driver"].reason.startswith("no-devices:")
    assert checks["gpu count"].status is Status.FAIL
    assert "requires a GPU but the driver sees no NVIDIA GPU" in checks["gpu count"].reason


def test_driver_not_loaded_names_what_the_host_shows():
    facts = dataclasses.replace(
        healthy_h100(),
        driver=classify_failure(
            9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        ),
        nouveau_loaded=True,
        secure_boot=True,
        gpus=(),
    )
    checks = by_name(verify_host(facts, EXPECT, IMAGE))
    assert checks["nvidia driver"].status is Status.FAIL
    assert "nouveau is loaded right now; Secure Boot is on" in checks["nvidia driver"].reason
    assert checks["kernel modules"].status is Status.FAIL


def test_driver_without_a_module_for_the_running_kernel_says_so():
    """The classic after a kernel update: packages installed, DKMS never rebuilt."""
    facts = dataclasses.replace(
        healthy_h100(),
        driver=classify_failure(
            9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        ),
        gpus=(),
        kernel_release="6.1.0-28-amd64",
        nvidia_module_built=False,
        kernel_headers=False,
    )
    checks = by_name(verify_host(facts, EXPECT, IMAGE))
    assert "no nvidia.ko is built for the running kernel 6.1.0-28-amd64" in (
        checks["nvidia driver"].reason
    )
    modules = checks["kernel modules"]
    assert modules.status is Status.FAIL
    assert modules.reason.startswith(
        "no nvidia kernel module is built for the running kernel 6.1.0-28-amd64"
    )
    assert "linux-headers-6.1.0-28-amd64" in modules.reason
    assert "dkms autoinstall" in modules.reason


def test_a_missing_module_file_with_a_working_driver_and_no_packages_is_not_a_finding():
    """A driver loaded from outside /lib/modules (some vendor images) works: say nothing."""
    facts = dataclasses.replace(
        healthy_h100(), nvidia_module_built=False, driver_packages_installed=()
    )
    assert by_name(verify_host(facts, EXPECT, IMAGE))["kernel modules"].status is Status.OK


def test_version_mismatch_fails_with_reboot_advice():
    facts = dataclasses.replace(
        healthy_h100(),
        driver=classify_failure(
            18,
            "Failed to initialize NVML: Driver/library version mismatch\n"
            "NVML library version: 570.124",
        ),
    )
    assert facts.driver.state is DriverState.VERSION_MISMATCH
    check = by_name(verify_host(facts, EXPECT, IMAGE))["nvidia driver"]
    assert check.status is Status.FAIL
    assert "reboot" in check.reason


def test_workload_fails_when_cuda_op_fails_after_nvidia_smi_passed():
    facts = dataclasses.replace(
        healthy_h100(),
        workload=Workload(nvidia_smi_rc=0, torch_ok=False, torch_error="CUDA error: unknown error"),
    )
    check = by_name(verify_host(facts, EXPECT, IMAGE))["cuda workload"]
    assert check.status is Status.FAIL
    assert "/dev/nvidia-uvm" in check.reason
    assert "CUDA error: unknown error" in check.reason


def test_workload_not_run_is_a_warning_not_a_pass():
    facts = dataclasses.replace(healthy_h100(), workload=None)
    assert by_name(verify_host(facts, EXPECT, IMAGE))["cuda workload"].status is Status.WARN


def test_missing_uvm_device_fails():
    facts = dataclasses.replace(healthy_h100(), dev_nvidia_uvm=False)
    check = by_name(verify_host(facts, EXPECT, IMAGE))["device nodes"]
    assert check.status is Status.FAIL
    assert "nvidia-uvm" in check.reason


def test_docker_without_nvidia_runtime_fails():
    facts = dataclasses.replace(healthy_h100(), docker_runtimes=("runc",))
    check = by_name(verify_host(facts, EXPECT, IMAGE))["docker gpu runtime"]
    assert check.status is Status.FAIL
    assert "nvidia-ctk runtime configure --runtime=docker" in check.reason


def test_gpu_count_and_model_mismatch_fail():
    expect = HostExpectations(gpu_count=8, gpu_model="A100")
    checks = by_name(verify_host(healthy_h100(), expect, IMAGE))
    assert checks["gpu count"].status is Status.FAIL
    assert "1 GPU(s) found, the inventory expects 8" in checks["gpu count"].reason
    assert checks["gpu model"].status is Status.FAIL
    assert "'A100'" in checks["gpu model"].reason


def test_blackwell_gpu_on_cu126_image_fails_compute_capability():
    facts = healthy_h100()
    blackwell = dataclasses.replace(
        facts.gpus[0], name="NVIDIA RTX PRO 6000", compute_capability="12.0"
    )
    check = by_name(
        verify_host(dataclasses.replace(facts, gpus=(blackwell,)), HostExpectations(), IMAGE)
    )["compute capability"]
    assert check.status is Status.FAIL
    assert "12.0 is not in the torch 2.7.1 cu126 wheels" in check.reason


def test_gpu_from_a_driver_without_compute_cap_warns():
    header, row = first_section(H100, "nvidia-smi --query-gpu=").splitlines()[:2]
    cells = [list(map(str.strip, line.split(","))) for line in (header, row)]
    keep = [i for i, name in enumerate(cells[0]) if name != "compute_cap"]
    text = "\n".join(", ".join(line[i] for i in keep) for line in cells)
    gpus = tuple(parse_query_gpu(text))
    assert gpus[0].compute_capability is None
    facts = dataclasses.replace(healthy_h100(), gpus=gpus)
    check = by_name(verify_host(facts, HostExpectations(), IMAGE))["compute capability"]
    assert check.status is Status.WARN
    assert "compute capability unknown" in check.reason


def test_mig_enabled_without_devices_warns():
    facts = healthy_h100()
    gpu = dataclasses.replace(facts.gpus[0], mig_enabled=True, mig_pending=True)
    check = by_name(verify_host(dataclasses.replace(facts, gpus=(gpu,)), EXPECT, IMAGE))["mig"]
    assert check.status is Status.WARN
    assert "no MIG devices" in check.reason


def test_render_table_and_dicts():
    checks = [
        Check("nvidia driver", Status.OK, "driver 590.48.01"),
        Check("container toolkit", Status.FAIL, "security: old"),
    ]
    table = render_table(checks).splitlines()
    assert table[0].split() == ["CHECK", "STATUS", "REASON"]
    assert table[1] == "nvidia driver      ok      driver 590.48.01"
    assert table[2] == "container toolkit  fail    security: old"
    assert json.loads(json.dumps([c.to_dict() for c in checks]))[1] == {
        "name": "container toolkit",
        "status": "fail",
        "reason": "security: old",
    }


def test_worst_orders_fail_over_warn_over_ok_over_na():
    assert worst([]) is Status.NA
    assert worst([Check("a", Status.NA, ""), Check("b", Status.OK, "")]) is Status.OK
    assert worst([Check("a", Status.WARN, ""), Check("b", Status.OK, "")]) is Status.WARN
    assert worst([Check("a", Status.WARN, ""), Check("b", Status.FAIL, "")]) is Status.FAIL


# --- what could not be read, and releases newer than the tables -------------------

MIG_CAPTURE = MIG


def test_mig_h100_memory_health_is_unknown_not_ok():
    from test_nvidia import query_gpu_sections

    (gpu,) = parse_query_gpu(query_gpu_sections(MIG_CAPTURE)[0])
    assert gpu.markers["remapped_rows_pending"] == "[N/A]"
    facts = dataclasses.replace(healthy_h100(), gpus=(gpu,))
    check = by_name(verify_host(facts, HostExpectations(), IMAGE))["gpu memory health"]
    assert check.status is Status.WARN
    assert "memory health unknown" in check.reason
    assert "remapped_rows_pending" in check.reason
    assert "with MIG enabled" in check.reason
    assert "nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER" in check.reason
    assert "no uncorrected ECC errors" not in check.reason


def test_memory_values_a_driver_does_not_offer_are_unknown():
    gpu = dataclasses.replace(
        healthy_h100().gpus[0],
        remapped_rows_pending=None,
        remapped_rows_failure=None,
        remapped_rows_uncorrectable=None,
        markers={"remapped_rows_pending": "[not offered by this driver]"},
    )
    facts = dataclasses.replace(healthy_h100(), gpus=(gpu,))
    check = by_name(verify_host(facts, HostExpectations(), IMAGE))["gpu memory health"]
    assert check.status is Status.WARN
    assert "[not offered by this driver]" in check.reason


def test_ecc_disabled_is_a_warning_not_a_clean_bill():
    gpu = dataclasses.replace(healthy_h100().gpus[0], ecc_enabled=False)
    facts = dataclasses.replace(healthy_h100(), gpus=(gpu,))
    check = by_name(verify_host(facts, HostExpectations(), IMAGE))["gpu memory health"]
    assert check.status is Status.WARN
    assert "ECC is disabled" in check.reason


def test_a_610_host_reads_its_cuda_and_runs_a_cuda_13_3_image():
    info = parse_driver_info((FIXTURES / "driver-610" / "version.txt").read_text())
    facts = dataclasses.replace(
        healthy_h100(), driver_version=info.driver_version, cuda_version=info.cuda_version
    )
    image = ImagePin(cuda="13.3", torch="2.14.0", cuda_build="cu130")
    checks = by_name(verify_host(facts, HostExpectations(), image))
    assert checks["nvidia driver"].reason == "driver 610.57.04, supports CUDA 13.3"
    assert checks["driver vs image CUDA"].status is Status.OK
    assert "610.57.04 >= 610.43.02 needed by CUDA 13.3" in checks["driver vs image CUDA"].reason


def test_a_cuda_newer_than_the_table_warns_with_the_drivers_evidence():
    facts = dataclasses.replace(healthy_h100(), driver_version="615.71.09", cuda_version="13.4")
    image = ImagePin(cuda="13.4", torch="2.14.0", cuda_build="cu130")
    check = by_name(verify_host(facts, HostExpectations(), image))["driver vs image CUDA"]
    assert check.status is Status.WARN
    assert "driver 615.71.09 reports CUDA 13.4 >= 13.4" in check.reason
    assert "CUDA 13.4 is beyond gpuprov's table" in check.reason


def test_a_cuda_newer_than_the_table_without_driver_evidence_is_unknown():
    facts = dataclasses.replace(healthy_h100(), driver_version="615.71.09", cuda_version=None)
    image = ImagePin(cuda="13.4", torch="2.14.0", cuda_build="cu130")
    check = by_name(verify_host(facts, HostExpectations(), image))["driver vs image CUDA"]
    assert check.status is Status.WARN
    assert "did not report the CUDA version" in check.reason


def test_a_cu132_image_is_verified_and_its_arch_list_is_unknown():
    facts = dataclasses.replace(healthy_h100(), driver_version="595.71.05", cuda_version="13.2")
    image = ImagePin(cuda="13.2", torch="2.13.0", cuda_build="cu132")
    checks = by_name(verify_host(facts, HostExpectations(), image))
    assert checks["driver vs image CUDA"].status is Status.OK
    assert checks["compute capability"].status is Status.WARN
    assert "torch.cuda.get_arch_list()" in checks["compute capability"].reason
    assert "unknown PyTorch CUDA build" not in checks["compute capability"].reason
