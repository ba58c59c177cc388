"""Raw host observations to HostFacts, the workload probe's result, the image pin, the report."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.captures import H100, L40S, MIG, first_section, section

from gpuprov.core import host_facts as hf
from gpuprov.core.cuda_env import ImageCuda
from gpuprov.core.nvidia import DriverState
from gpuprov.core.verify import HostExpectations, Status, verify_host

MISSING = {"rc": None, "out": "nvidia-smi: command not found"}


def ok(out: str) -> dict:
    return {"rc": 0, "out": out}


def query_rows(path) -> str:
    """The capture's full --query-gpu table (with header: the parser takes its columns)."""
    return first_section(path, "nvidia-smi --query-gpu")


def raw_host(path=H100, **overrides) -> dict:
    raw = {
        "nvidia_smi_query": ok(query_rows(path)),
        "nvidia_smi_version": ok(section(path, "nvidia-smi --version")[0]),
        "nvidia_smi_list": ok(section(path, "nvidia-smi -L")[0]),
        "nvidia_ctk_version": ok("NVIDIA Container Toolkit CLI version 1.19.1\ncommit: abc"),
        "nvidia_container_cli_version": ok("cli-version: 1.19.1\nlib-version: 1.19.1\n"),
        "dpkg_driver_packages": {
            "rc": 1,
            "out": "nvidia-driver-570 hi \nnvidia-utils-570 ii \n"
            "nvidia-container-toolkit ii \nnvidia-old rc \n"
            "dpkg-query: no packages found matching "
            "cuda-drivers*\n",
        },
        "apt_showhold": ok("nvidia-driver-570\nnvidia-utils-570\n"),
        "proc_modules": "nvidia_uvm 1 0 - Live 0x0\nnvidia 2 1 nvidia_uvm, Live 0x0\n",
        "modprobe_d": {"/etc/modprobe.d/nouveau.conf": "# keep the GPU\nblacklist nouveau\n"},
        "secure_boot_efivar": "0600000000",
        "kernel_release": "6.1.0-18-amd64",
        "kernel_headers": True,
        "dev_nodes": ["nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidiactl"],
        "mounts": "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n",
        "daemon_json": json.dumps(
            {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "log-driver": "local"}
        ),
        "cdi_specs": ["/etc/cdi/nvidia.yaml"],
    }
    raw.update(overrides)
    return raw


DOCKER = {"Runtimes": {"runc": {}, "nvidia": {}}, "DefaultRuntime": "runc"}


def test_a_healthy_host_reads_back_completely() -> None:
    facts = hf.host_facts(raw_host(), DOCKER)
    assert facts.driver.ok
    assert (facts.driver_version, facts.cuda_version) == ("590.48.01", "13.1")
    assert [g.name for g in facts.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert facts.secure_boot is False
    assert facts.nouveau_loaded is False and facts.nouveau_blacklisted is True
    assert facts.dev_nvidia and facts.dev_nvidia_uvm
    assert facts.cgroup_version == 2
    assert facts.driver_packages_installed == ("nvidia-driver-570", "nvidia-utils-570")
    assert facts.driver_packages_held is True
    assert (facts.nvidia_ctk_version, facts.nvidia_container_cli_version) == ("1.19.1", "1.19.1")
    assert facts.docker_runtimes == ("nvidia", "runc")
    assert facts.daemon_json_runtimes == ("nvidia",)
    json.dumps(hf.facts_summary(facts))  # the report must serialise


def test_missing_commands_are_data_not_errors() -> None:
    raw = {
        key: MISSING
        for key in (
            "nvidia_smi_query",
            "nvidia_smi_version",
            "nvidia_smi_list",
            "nvidia_ctk_version",
            "nvidia_container_cli_version",
            "dpkg_driver_packages",
            "apt_showhold",
        )
    }
    facts = hf.host_facts(raw)
    assert facts.driver.state is DriverState.NOT_INSTALLED
    assert facts.gpus == () and facts.driver_version is None
    assert facts.nvidia_ctk_version is None and facts.nvidia_container_cli_version is None
    assert facts.driver_packages_held is None and facts.driver_packages_installed is None
    assert facts.docker_running is False
    assert facts.nouveau_loaded is None and facts.dev_nvidia is None
    assert facts.cgroup_version is None
    assert not hf.gpu_present(raw)


def test_driver_not_loaded_and_version_mismatch_are_classified() -> None:
    failed = hf.host_facts(
        raw_host(
            nvidia_smi_query={
                "rc": 9,
                "out": (
                    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
                ),
            }
        )
    )
    assert failed.driver.state is DriverState.NOT_LOADED and failed.gpus == ()
    mismatch = hf.host_facts(
        raw_host(
            nvidia_smi_query={
                "rc": 18,
                "out": (
                    "Failed to initialize NVML: Driver/library version mismatch\n"
                    "NVML library version: 570.1"
                ),
            }
        )
    )
    assert mismatch.driver.state is DriverState.VERSION_MISMATCH


def test_na_fields_stay_data() -> None:
    facts = hf.host_facts(
        raw_host(
            nvidia_smi_query=ok(
                "0, NVIDIA H100, GPU-1, 00000000:01:00.0, 590.48.01, 81559, 9.0, [N/A], [N/A], "
                "Enabled, [N/A], [Not Supported], [N/A], [N/A], [N/A], [N/A], [N/A], [N/A]"
            )
        )
    )
    assert facts.driver.ok
    assert facts.gpus[0].ecc_enabled is None
    assert facts.gpus[0].markers["ecc_uncorrected_volatile"] == "[Not Supported]"


def test_mig_devices_come_from_the_list() -> None:
    facts = hf.host_facts(raw_host(MIG))
    assert facts.gpus[0].mig_enabled is True
    assert [d.profile for d in facts.gpus[0].mig_devices] == [
        "3g.40gb",
        "2g.20gb",
        "1g.10gb",
        "1g.10gb",
    ]


def test_old_driver_without_version_flag_needs_the_plain_header() -> None:
    raw = raw_host(nvidia_smi_version={"rc": 2, "out": "Invalid combination of input arguments."})
    assert hf.needs_plain_header(raw)
    raw["nvidia_smi_plain"] = ok(
        "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2     |"
    )
    facts = hf.host_facts(raw)
    assert (facts.driver_version, facts.cuda_version) == ("535.104.05", "12.2")
    assert not hf.needs_plain_header(raw_host())


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, False),
        ({"a.conf": "blacklist nouveau\n"}, True),
        ({"a.conf": "# blacklist nouveau\n"}, False),
        ({"a.conf": "install nouveau /bin/false\n"}, True),
        ({"a.conf": "blacklist nouveaux\n"}, False),
    ],
)
def test_nouveau_blacklist(files, expected) -> None:
    assert hf.nouveau_blacklisted(files) is expected


@pytest.mark.parametrize(
    ("hexdata", "expected"),
    [("0600000001", True), ("0600000000", False), (None, None), ("06", None), ("zz", None)],
)
def test_secure_boot_variable(hexdata, expected) -> None:
    assert hf.secure_boot(hexdata) is expected


@pytest.mark.parametrize(
    ("mounts", "expected"),
    [
        ("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0", 2),
        ("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ntmpfs /sys/fs/cgroup tmpfs ro 0 0", 1),
        ("proc /proc proc rw 0 0", None),
    ],
)
def test_cgroup_version(mounts, expected) -> None:
    assert hf.cgroup_version(mounts) == expected


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["updates/dkms/nvidia.ko", "updates/dkms/nvidia-uvm.ko"], True),
        (["kernel/drivers/video/nvidia.ko.zst", "kernel/drivers/video/nvidia-drm.ko.zst"], True),
        (["updates/dkms/nvidia.ko.xz"], True),
        (["updates/dkms/nvidia-uvm.ko", "kernel/drivers/gpu/drm/nouveau/nouveau.ko"], False),
        ([], False),
        (None, None),
    ],
)
def test_nvidia_module_for_the_running_kernel(files, expected) -> None:
    assert hf.nvidia_module_built(files) is expected
    facts = hf.host_facts(raw_host(kernel_nvidia_modules=files))
    assert facts.nvidia_module_built is expected
    assert facts.kernel_release == "6.1.0-18-amd64"


def test_unheld_and_missing_driver_packages() -> None:
    unheld = hf.host_facts(raw_host(apt_showhold=ok("nvidia-driver-570\n")))
    assert unheld.driver_packages_held is False
    run_installer = hf.host_facts(
        raw_host(
            dpkg_driver_packages={
                "rc": 1,
                "out": "dpkg-query: no packages found matching nvidia-*\n",
            }
        )
    )
    assert run_installer.driver_packages_installed == ()
    check = verify_host(
        run_installer, HostExpectations(), hf.gate_pin({"torch": "2.7.1", "cuda": "12.6"})
    )
    held = next(c for c in check if c.name == "driver packages held")
    assert held.status is Status.WARN and "no NVIDIA driver package installed by apt" in held.reason


def test_daemon_json_errors_are_reported() -> None:
    assert hf.daemon_json("{not json")[0] is None
    assert "not valid JSON" in hf.daemon_json("{not json")[1]
    assert hf.daemon_json(None) == ({}, None)
    assert hf.daemon_json("[]")[0] is None


def test_configured_but_not_restarted_runtime_says_restart() -> None:
    facts = hf.host_facts(raw_host(), {"Runtimes": {"runc": {}}, "DefaultRuntime": "runc"})
    checks = {
        c.name: c
        for c in verify_host(
            facts, HostExpectations(), hf.gate_pin({"torch": "2.7.1", "cuda": "12.6"})
        )
    }
    assert checks["docker gpu runtime"].status is Status.FAIL
    assert "restart required" in checks["docker gpu runtime"].reason


def test_workload_probe_results() -> None:
    line = json.dumps(
        {"gpuprov_workload": 1, "nvidia_smi_rc": 0, "nvidia_smi": "GPU 0: H100", "torch_ok": True}
    )
    run = hf.workload({"started": True, "output": f"noise\n{line}\n"})
    assert run.nvidia_smi_rc == 0 and run.torch_ok is True and not run.error
    failed = hf.workload(
        {
            "started": False,
            "error": (
                "Error starting container abc: 500 Server Error for http+docker://localhost/v1.41/"
                "containers/abc/start: Internal Server Error "
                '("could not select device driver "nvidia" with capabilities: [[gpu]]")'
            ),
        }
    )
    assert failed.error == 'could not select device driver "nvidia" with capabilities: [[gpu]]'
    silent = hf.workload({"started": True, "output": "Segmentation fault"})
    assert silent.error == "the probe printed no result: Segmentation fault"
    assert hf.workload({"skipped": "check mode"}).skipped == "check mode"
    assert hf.workload(None) is None


def test_workload_gate_states_the_cuda_failure() -> None:
    pin = hf.gate_pin({"torch": "2.7.1", "cuda": "12.6"})
    line = json.dumps(
        {
            "gpuprov_workload": 1,
            "nvidia_smi_rc": 0,
            "nvidia_smi": "GPU 0",
            "torch_ok": False,
            "torch_error": "RuntimeError: no CUDA GPUs",
        }
    )
    facts = hf.host_facts(raw_host(), DOCKER, {"started": True, "output": line})
    workload = verify_host(facts, HostExpectations(), pin)[-1]
    assert workload.status is Status.FAIL
    assert "torch CUDA matmul failed (RuntimeError: no CUDA GPUs)" in workload.reason
    skipped = hf.host_facts(raw_host(), DOCKER, {"skipped": "disabled"})
    assert verify_host(skipped, HostExpectations(), pin)[-1].reason == "not run: disabled"


@pytest.mark.parametrize(
    ("promises", "cuda", "build", "torch"),
    [
        ({"torch": "2.7.1", "cuda": "12.6"}, "12.6", "cu126", "2.7.1"),
        ({"torch": "2.7.1+cu128", "cuda": "12.8"}, "12.8", "cu128", "2.7.1"),
        ({"torch": "2.13.0+cpu", "cuda": "none"}, None, None, "2.13.0"),
        ({"torch": "2.7.1", "cuda": "none"}, None, None, "2.7.1"),
    ],
)
def test_image_pin_from_promises(promises, cuda, build, torch) -> None:
    pin = hf.gate_pin(promises)
    assert (pin.cuda, pin.cuda_build, pin.torch) == (cuda, build, torch)


def test_cpu_image_on_a_gpu_host_skips_the_cuda_gates() -> None:
    facts = hf.host_facts(raw_host(), DOCKER)
    checks = {
        c.name: c
        for c in verify_host(
            facts, HostExpectations(), hf.gate_pin({"torch": "2.13.0+cpu", "cuda": "none"})
        )
    }
    assert checks["driver vs image CUDA"].status is Status.NA
    assert checks["compute capability"].status is Status.NA


def test_report_is_deterministic_and_names_failures() -> None:
    facts = hf.host_facts(raw_host(), {"Runtimes": {"runc": {}}})
    expect = hf.expectations({"required": True, "count": 2, "model": "H100"})
    promises = {"torch": "2.7.1", "cuda": "12.6"}
    pin = dataclasses.replace(
        hf.gate_pin(promises), declared=ImageCuda(version="12.6.3", required="12.6")
    )
    checks = verify_host(facts, expect, pin)
    report = hf.report("gpu1", checks, facts, pin, promises, expect)
    assert report == hf.report("gpu1", checks, facts, pin, promises, expect)
    assert report["image_declares"] == {
        "version": "12.6.3",
        "required": "12.6",
        "driver_floors": (),
    }
    assert report["status"] == "fail"
    assert report["failed"] == ["gpu count", "docker gpu runtime"]
    message = hf.failure_message("gpu1", checks)
    assert message.startswith(f"gpu1: {len(report['failed'])} check(s) failed:")
    assert "- gpu count: 1 GPU(s) found, the inventory expects 2" in message
    json.dumps(report)


def test_the_query_asks_for_what_the_drivers_help_offers() -> None:
    (help_595,) = section(L40S, "nvidia-smi --help-query-gpu")
    command = hf.gpu_query_command(ok(help_595))
    fields = command[1].removeprefix("--query-gpu=").split(",")
    assert "kmd_version" in fields and "driver_version" not in fields
    (help_590,) = section(H100, "nvidia-smi --help-query-gpu")
    assert "driver_version" in hf.gpu_query_command(ok(help_590))[1].split(",")
    unreadable = hf.gpu_query_command({"rc": 2, "out": "Invalid combination"})
    assert unreadable == hf.gpu_query_command(None)
    assert "driver_version" in unreadable[1]


def test_a_query_with_kmd_version_reads_the_driver() -> None:
    facts = hf.host_facts(raw_host(L40S), DOCKER)
    assert facts.driver_version == "595.80"
    assert facts.gpus[0].driver_version == "595.80"


SKIP = {
    "enabled": True,
    "gpu_present": True,
    "docker_host": "unix:///var/run/docker.sock",
    "docker_answers": True,
    "image": "registry.test:5000/team/pytorch@sha256:" + "ab" * 32,
}


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({}, ""),
        ({"enabled": False}, "disabled by host_verify_workload: false"),
        ({"gpu_present": False}, "no GPU answered nvidia-smi on the host"),
        ({"docker_answers": False}, "Docker does not answer at unix:///var/run/docker.sock"),
        ({"image": " "}, "the team image is built on the hosts and has no digest"),
        ({"image_on_host": True}, ""),
        ({"image_on_host": False}, ""),  # pulled
        ({"image_on_host": False, "check_mode": True}, "is not on the host and check mode does"),
        ({"image_on_host": False, "pull": False}, "and host_verify_pull_image is false"),
        ({"image_on_host": False, "pull_error": "manifest unknown"}, "failed: manifest unknown"),
        ({"image_on_host": False, "pull_error": ""}, "pulling it failed: unknown error"),
    ],
)
def test_workload_skip_says_why_the_workload_does_not_run(given, says):
    said = hf.workload_skip(**{**SKIP, **given})
    assert (said == "") if says == "" else (says in said), said


def test_probe_result_reads_what_docker_container_registered():
    assert hf.probe_result("no GPU", {"skipped": True}) == {"skipped": "no GPU"}
    ran = hf.probe_result("", {"status": 0, "container": {"Output": "out"}})
    assert ran == {"started": True, "error": "", "output": "out"}
    failed = hf.probe_result("", {"failed": True, "msg": "could not select device driver"})
    assert failed == {"started": False, "error": "could not select device driver", "output": ""}


def test_gate_pin_takes_the_cuda_the_image_declares():
    image = {"Config": {"Env": ["CUDA_VERSION=12.8.1", "NVIDIA_REQUIRE_CUDA=cuda>=12.8"]}}
    pin = hf.gate_pin({"torch": "2.7.1", "cuda": "12.6"}, image=image)
    assert pin.declared is not None and pin.declared.version == "12.8.1"
    assert hf.gate_pin({"torch": "2.7.1", "cuda": "12.6"}).cuda_build == "cu126"
    with pytest.raises(hf.PromisesError, match="lacks 'torch'"):
        hf.gate_pin({"cuda": "12.6"})
