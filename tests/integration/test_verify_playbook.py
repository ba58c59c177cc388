"""playbooks/verify.yml through Ansible against the test bed's SSH hosts.

The hosts replay real nvidia-smi captures; there is no GPU, so the workload
container (started with a GPU request the fake hook accepts) must report the
honest failure, and the tests assert exactly that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from testbed import H100_CAPTURE, TestBed

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
CHECK_ORDER = [
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
PROMISES = {
    "python": "3.11",
    "torch": "2.7.1",
    "torchvision": "0.22.1",
    "torchaudio": "2.7.1",
    "cuda": "12.6",
    "cudnn": "9.5.1",
}
GPU_VARS = {
    "h100": {"gpuprov_gpu": {"required": True, "count": 1, "model": "H100"}},
    "oldgpu": {"gpuprov_gpu": {"required": True, "count": 1, "model": "L40S"}},
    "notoolkit": {"gpuprov_gpu": {"required": True, "count": 1, "model": "H100"}},
}
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }


def run_playbook(
    inventory: Path, reports: Path, *extra: str, playbook: str = "playbooks/verify.yml"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            playbook,
            "-e",
            f"host_verify_report_dir={reports}",
            *extra,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def recap(proc: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    return {
        m.group(1): {
            "ok": int(m.group(2)),
            "changed": int(m.group(3)),
            "unreachable": int(m.group(4)),
            "failed": int(m.group(5)),
        }
        for m in RECAP.finditer(proc.stdout)
    }


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def write_verify_inventory(testbed: TestBed, directory: Path, image_ref: str) -> Path:
    """hosts.yml from the bed plus group_vars/all/image.yml pinning the workload image."""
    reference, digest = image_ref.split("@")
    group_vars = directory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    (group_vars / "image.yml").write_text(
        yaml.safe_dump(
            {
                "gpuprov_image": {
                    "reference": reference,
                    "digest": digest,
                    "source": "pull",
                    "flavour": "cuda",
                    "promises": PROMISES,
                }
            }
        )
    )
    return testbed.write_inventory(directory / "hosts.yml", extra_host_vars=GPU_VARS)


# What nvidia/cuda:12.6.3 images set; the driver gate reads them from the image.
CUDA_ENV = {
    "CUDA_VERSION": "12.6.3",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.6 brand=tesla,driver>=470,driver<471",
}


@pytest.fixture(scope="module")
def workload_image(testbed: TestBed) -> str:
    """A small image with python3 and CUDA 12.6's environment but no torch and no GPU
    libraries, pushed by digest."""
    assert testbed.engine
    tag = "gpuprov-test/verify-team-build:1"
    dockerfile = f"FROM {testbed.base_image}\n" + "".join(
        f'ENV {key}="{value}"\n' for key, value in CUDA_ENV.items()
    )
    testbed.engine.docker("build", "-q", "-t", tag, "-", input=dockerfile)
    return testbed.push_image(tag, "gpuprov-test/verify-team:1")


@pytest.fixture(scope="module")
def verify_inventory(
    testbed: TestBed, workload_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return write_verify_inventory(testbed, tmp_path_factory.mktemp("verify-inv"), workload_image)


@pytest.fixture(scope="module")
def first_run(verify_inventory: Path, tmp_path_factory: pytest.TempPathFactory):
    reports = tmp_path_factory.mktemp("reports")
    proc = run_playbook(verify_inventory, reports)
    return proc, reports


def report_of(reports: Path, host: str) -> dict:
    return json.loads((reports / f"{host}.json").read_text())


def test_every_host_gets_a_report_in_the_fixed_order(first_run) -> None:
    proc, reports = first_run
    assert proc.returncode != 0, "failing hosts must fail the play"
    for host in ("h100", "oldgpu", "notoolkit"):
        report = report_of(reports, host)
        assert report["host"] == host
        assert [c["name"] for c in report["checks"]] == CHECK_ORDER
        failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
        assert report["failed"] == failed
        assert report["status"] == ("fail" if failed else report["status"])
        # The play failed this host with every failed check's reason.
        for name in failed:
            reason = checks(report)[name]["reason"]
            assert f"- {name}: {reason}"[:80] in proc.stdout.replace("\n    ", " ")


def test_h100_passes_the_driver_gpu_and_toolkit_gates(first_run) -> None:
    _, reports = first_run
    report = report_of(reports, "h100")
    found = checks(report)
    for name in (
        "nvidia driver",
        "driver vs image CUDA",
        "gpu count",
        "gpu model",
        "compute capability",
        "gpu memory health",
        "mig",
        "container toolkit",
        "device nodes",
    ):
        assert found[name]["status"] == "ok", (name, found[name])
    assert found["nvidia driver"]["reason"] == "driver 590.48.01, supports CUDA 13.1"
    assert found["driver vs image CUDA"]["reason"] == (
        "driver 590.48.01 >= 560.35.05 needed by CUDA 12.6.3 in the team image "
        "(CUDA_VERSION=12.6.3)"
    )
    assert found["container toolkit"]["reason"] == "toolkit 1.19.1 >= 1.19.1"
    assert report["facts"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert report["image_declares"] == {
        "version": "12.6.3",
        "required": "12.6",
        "driver_floors": ["470"],
    }


def test_a_pin_that_disagrees_with_the_image_fails_the_driver_gate(
    first_run, verify_inventory, tmp_path
) -> None:
    """The pin promises CUDA 12.4; the image on the host declares 12.6.3: the pin is wrong."""
    promises = {**PROMISES, "cuda": "12.4", "torch": "2.5.1"}
    proc = run_playbook(
        verify_inventory,
        tmp_path,
        "-l",
        "h100",
        "-e",
        json.dumps({"host_verify_image_promises": promises, "host_verify_workload": False}),
    )
    assert recap(proc)["h100"]["failed"] == 1
    gate = checks(report_of(tmp_path, "h100"))["driver vs image CUDA"]
    assert gate["status"] == "fail"
    assert gate["reason"] == (
        "the image declares CUDA_VERSION=12.6.3 but gpuprov_image.promises.cuda is 12.4: "
        "re-pin the image (gpuprov image pin) so every gate checks what really runs; "
        "driver 590.48.01 >= 560.35.05 needed by CUDA 12.6.3 in the team image "
        "(CUDA_VERSION=12.6.3)"
    )


def test_missing_docker_runtime_is_reported_with_the_fix(first_run) -> None:
    _, reports = first_run
    runtime = checks(report_of(reports, "h100"))["docker gpu runtime"]
    assert runtime["status"] == "fail"
    assert runtime["reason"].startswith("no 'nvidia' runtime in docker (runtimes: ")
    assert "nvidia-ctk runtime configure --runtime=docker" in runtime["reason"]


def test_workload_without_a_real_gpu_reports_the_honest_failure(first_run, testbed) -> None:
    """The container got its GPU request through (the hook logged it) but no CUDA works."""
    _, reports = first_run
    workload = checks(report_of(reports, "h100"))["cuda workload"]
    assert workload["status"] == "fail"
    assert workload["reason"] == (
        "nvidia-smi failed in the container (exit status 127: nvidia-smi: not found in the "
        "container (the runtime did not inject it)): the toolkit/runtime does not give the "
        "container the GPU; CUDA operation failed: import torch failed: "
        "ModuleNotFoundError: No module named 'torch'"
    )
    hook_log = testbed.ssh("h100", "cat /var/log/gpuprov-fake/hook.log").stdout
    requests = [json.loads(line) for line in hook_log.splitlines() if line.strip()]
    assert any(r["NVIDIA_VISIBLE_DEVICES"] == "all" for r in requests), hook_log
    leftover = testbed.ssh("h100", "docker ps -aq --filter name=gpuprov-verify-probe").stdout
    assert leftover.strip() == "", "the probe container must be removed"


def test_old_driver_fails_naming_both_versions(first_run) -> None:
    proc, reports = first_run
    found = checks(report_of(reports, "oldgpu"))
    gate = found["driver vs image CUDA"]
    assert gate["status"] == "fail"
    assert gate["reason"].startswith(
        "driver 535.104.05 < 560.35.05 needed by CUDA 12.6.3 in the team image "
        "(CUDA_VERSION=12.6.3); it runs only through minor-version compatibility"
    )
    assert "upgrade the driver or pin an image built for cu121" in gate["reason"]
    assert found["nvidia driver"]["status"] == "ok"
    assert "oldgpu: " in proc.stdout and "535.104.05 < 560.35.05" in proc.stdout


def test_host_without_toolkit_reports_it(first_run) -> None:
    _, reports = first_run
    found = checks(report_of(reports, "notoolkit"))
    assert found["container toolkit"]["status"] == "fail"
    assert found["container toolkit"]["reason"].startswith("NVIDIA Container Toolkit not installed")
    workload = found["cuda workload"]
    assert workload["status"] == "fail"
    assert workload["reason"] == (
        'the workload container did not run: could not select device driver "nvidia" with '
        "capabilities: [[gpu]]"
    )


def test_check_mode_rerun_changes_nothing_and_agrees(
    first_run, verify_inventory, tmp_path_factory
) -> None:
    _, reports = first_run
    before = {h: (reports / f"{h}.json").read_text() for h in ("h100", "oldgpu", "notoolkit")}
    proc = run_playbook(verify_inventory, reports, "--check", "--diff")
    counts = recap(proc)
    assert set(counts) == {"h100", "oldgpu", "notoolkit"}
    for host in ("h100", "oldgpu", "notoolkit"):
        assert counts[host]["changed"] == 0, proc.stdout[-3000:]
        assert counts[host]["unreachable"] == 0
        assert (reports / f"{host}.json").read_text() == before[host]
    assert counts["oldgpu"]["failed"] == 1


def test_second_run_reports_zero_changed(first_run, verify_inventory) -> None:
    _, reports = first_run
    proc = run_playbook(verify_inventory, reports)
    counts = recap(proc)
    assert all(c["changed"] == 0 for c in counts.values()), proc.stdout[-3000:]


@pytest.fixture
def faulty_hosts(testbed: TestBed):
    """h100 with a toolkit that has a known escape; oldgpu with uncorrected ECC errors."""
    testbed.reconfigure_host("h100", toolkit_version="1.17.4")
    testbed.ssh(
        "oldgpu",
        'echo \'{"query_gpu": {"ecc.errors.uncorrected.volatile.total": '
        '"2", "remapped_rows.pending": "Yes"}}\' '
        "> /etc/gpuprov-fake/faults.json",
    )
    try:
        yield
    finally:
        testbed.reconfigure_host("h100", toolkit_version="1.19.1")
        testbed.ssh("oldgpu", "rm -f /etc/gpuprov-fake/faults.json")


def test_old_toolkit_and_ecc_errors_fail(faulty_hosts, verify_inventory, tmp_path) -> None:
    proc = run_playbook(
        verify_inventory, tmp_path, "-l", "h100,oldgpu", "-e", "host_verify_workload=false"
    )
    assert recap(proc)["h100"]["failed"] == 1
    toolkit = checks(report_of(tmp_path, "h100"))["container toolkit"]
    assert toolkit == {
        "name": "container toolkit",
        "status": "fail",
        "reason": "security: toolkit 1.17.4 < 1.19.1 allows container escape to the host: "
        "CVE-2025-23266 (fixed in 1.17.8), CVE-2025-23267 (fixed in 1.17.8), "
        "CVE-2026-24260 (fixed in 1.19.1); upgrade nvidia-container-toolkit",
    }
    assert "security: toolkit 1.17.4 < 1.19.1" in proc.stdout
    memory = checks(report_of(tmp_path, "oldgpu"))["gpu memory health"]
    assert memory["status"] == "fail"
    assert memory["reason"].startswith(
        "GPU 0 (NVIDIA L40S): 2 uncorrected ECC error(s) since boot, row remapping pending: "
        "drain the host"
    )
    workload = checks(report_of(tmp_path, "h100"))["cuda workload"]
    assert workload["status"] == "warn"
    assert workload["reason"] == "not run: disabled by host_verify_workload: false"


def test_local_inventory_reports_not_applicable(tmp_path) -> None:
    """This machine has no GPU and its inventory allows that: every GPU row says n/a."""
    proc = run_playbook(REPO / "inventories" / "local", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = report_of(tmp_path, "localhost")
    assert report["status"] == "n/a"
    assert {c["status"] for c in report["checks"]} == {"n/a"}
    assert all(c["reason"].endswith("; allowed by the inventory") for c in report["checks"])
    assert "no NVIDIA GPU" in proc.stdout


@pytest.fixture
def driver_not_built(testbed: TestBed):
    """notoolkit after a kernel update: driver not loaded, no nvidia.ko for the new kernel."""
    release = testbed.ssh("notoolkit", "uname -r").stdout.strip()
    tree = f"/lib/modules/{release}"
    existed = testbed.ssh("notoolkit", f"test -d {tree}", check=False).returncode == 0
    assert not existed, f"the bed host already has {tree}; the test would change it"
    testbed.ssh(
        "notoolkit", f"mkdir -p {tree}/updates/dkms && touch {tree}/updates/dkms/nvidia-uvm.ko"
    )
    testbed.reconfigure_host("notoolkit", capture=None)
    try:
        yield release
    finally:
        testbed.reconfigure_host("notoolkit", capture=H100_CAPTURE)
        testbed.ssh("notoolkit", f"rm -rf {tree}")


def test_driver_without_a_module_for_the_running_kernel(
    driver_not_built: str, verify_inventory, tmp_path
) -> None:
    release = driver_not_built
    proc = run_playbook(
        verify_inventory, tmp_path, "-l", "notoolkit", "-e", "host_verify_workload=false"
    )
    assert recap(proc)["notoolkit"]["failed"] == 1
    found = checks(report_of(tmp_path, "notoolkit"))
    assert found["nvidia driver"]["status"] == "fail"
    assert (
        f"no nvidia.ko is built for the running kernel {release}"
        in (found["nvidia driver"]["reason"])
    )
    assert found["kernel modules"] == {
        "name": "kernel modules",
        "status": "fail",
        "reason": f"no nvidia kernel module is built for the running kernel {release} (a kernel "
        f"update without a DKMS rebuild): install linux-headers-{release}, run `dkms "
        "autoinstall` and load the module, or boot the kernel the driver was built for",
    }
