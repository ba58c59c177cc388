"""Repair (nvidia_driver, container_toolkit) with real apt on a test host.

The repository is a flat apt repository of empty stand-ins with NVIDIA's
package names and versions (testbed.apt_repo builds it with equivs), plus python3-apt for
Ansible's apt module, copied to the host and used as `file:` source; the host
has no route to any mirror, so its own sources are moved aside for the test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from test_verify_playbook import REPO, ansible_env, checks, recap, report_of, run_playbook
from testbed import TestBed, apt_repo

HOST = "h100"
REMOTE_REPO = apt_repo.REMOTE_REPO
SOURCE = apt_repo.SOURCE
TOOLKIT = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
DRIVER = ["nvidia-driver", "nvidia-kernel-dkms"]
USER_KEYS = {"log-opts": {"max-size": "10m"}}


def build_repo(directory: Path) -> Path:
    if apt_repo.missing_tools():
        pytest.fail("the repair tests need equivs and dpkg-dev (apt-get install equivs dpkg-dev)")
    return apt_repo.build_repo(directory)


def copy_to_host(testbed: TestBed, source: Path, target: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(source), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        [*testbed.ssh_argv(HOST), f"mkdir -p {target} && tar -C {target} -x"],
        stdin=tar.stdout,
        check=True,
        timeout=120,
    )
    tar.wait()


def host_json(testbed: TestBed, path: str) -> dict:
    return json.loads(testbed.ssh(HOST, f"cat {path}").stdout)


def docker_runtimes(testbed: TestBed) -> set[str]:
    out = testbed.ssh(HOST, "docker info --format '{{json .Runtimes}}'").stdout
    return set(json.loads(out))


def versions(testbed: TestBed, names: list[str]) -> dict[str, str]:
    out = testbed.ssh(
        HOST, "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(names), check=False
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def repair_host(testbed: TestBed, tmp_path_factory: pytest.TempPathFactory):
    """h100 with toolkit 1.17.4 (by dpkg) and user keys in daemon.json; restored after."""
    repo = build_repo(tmp_path_factory.mktemp("apt-repo"))
    copy_to_host(testbed, repo, REMOTE_REPO)
    original_daemon = testbed.ssh(HOST, "cat /etc/docker/daemon.json").stdout
    daemon = {**json.loads(original_daemon), **USER_KEYS}
    testbed.ssh(
        HOST,
        "mv /etc/apt/sources.list /etc/apt/sources.list.gpuprov-test && "
        f"dpkg -i {REMOTE_REPO}/*_1.17.4-1_amd64.deb >/dev/null && "
        f"echo '{json.dumps(daemon)}' > /etc/docker/daemon.json && "
        "service docker restart && "
        "until docker version >/dev/null 2>&1; do sleep 0.2; done",
    )
    try:
        yield original_daemon
    finally:
        standins = " ".join(
            TOOLKIT + DRIVER + ["python3-apt", "python-apt-common", "distro-info-data"]
        )
        testbed.ssh(
            HOST,
            "docker rm -f gpuprov-test-ws >/dev/null 2>&1; "
            f"apt-mark unhold {standins} >/dev/null 2>&1; "
            f"dpkg --purge {standins} >/dev/null 2>&1; "
            "rm -f /etc/apt/sources.list.d/gpuprov-*.list "
            "/etc/modprobe.d/gpuprov-blacklist-nouveau.conf; "
            f"rm -rf {REMOTE_REPO} /var/lib/apt/lists/*; "
            "mv /etc/apt/sources.list.gpuprov-test /etc/apt/sources.list",
            check=False,
        )
        testbed.ssh(
            HOST,
            f"cat > /etc/docker/daemon.json <<'EOF'\n{original_daemon}EOF\n"
            "service docker restart >/dev/null; "
            "until docker version >/dev/null 2>&1; do sleep 0.2; done",
        )


@pytest.fixture(scope="module")
def repair_inventory(testbed: TestBed, workload_image_ref: str, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("repair-inv")
    reference, digest = workload_image_ref.split("@")
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "group_vars" / "all" / "image.yml").write_text(
        yaml.safe_dump(
            {
                "gpuprov_image": {
                    "reference": reference,
                    "digest": digest,
                    "source": "pull",
                    "promises": {"python": "3.11", "torch": "2.7.1", "cuda": "12.6"},
                }
            }
        )
    )
    managed = {
        "gpuprov_gpu": {"required": True, "count": 1, "model": "H100"},
        "nvidia_driver_manage": True,
        "nvidia_driver_apt_source": SOURCE,
        "nvidia_driver_apt_key_url": "",
        "nvidia_driver_version": "570.124.06-1",
        "container_toolkit_manage": True,
        "container_toolkit_apt_source": SOURCE,
        "container_toolkit_apt_key_url": "",
    }
    return testbed.write_inventory(directory / "hosts.yml", extra_host_vars={HOST: managed})


@pytest.fixture(scope="module")
def workload_image_ref(testbed: TestBed) -> str:
    return testbed.push_image(testbed.base_image, "gpuprov-test/verify-team:1")


def task_changed(output: str, task: str) -> bool:
    """Whether the container_toolkit task named `task` reported changed on HOST.

    The test asks about the tasks whose effect it checks, not the play's total:
    earlier tests on the shared bed may leave the host where another task has
    something to do.
    """
    block = output.split(f"TASK [container_toolkit : {task}]", 1)
    if len(block) < 2:
        return False
    return f"changed: [{HOST}]" in block[1].split("TASK [", 1)[0]


def prepare(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inventory),
            "playbooks/prepare.yml",
            "-l",
            HOST,
            *extra,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def repaired(repair_host, repair_inventory):
    proc = prepare(repair_inventory)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def test_repair_pins_and_holds_the_packages(repaired, testbed) -> None:
    assert versions(testbed, TOOLKIT) == dict.fromkeys(TOOLKIT, "1.19.1-1")
    assert versions(testbed, DRIVER) == dict.fromkeys(DRIVER, "570.124.06-1")
    held = set(testbed.ssh(HOST, "apt-mark showhold").stdout.split())
    assert set(TOOLKIT + DRIVER) <= held
    assert "reboot required on h100" in repaired.stdout


def test_repair_blacklists_nouveau(repaired, testbed) -> None:
    text = testbed.ssh(HOST, "cat /etc/modprobe.d/gpuprov-blacklist-nouveau.conf").stdout
    assert "blacklist nouveau" in text.splitlines()


def test_runtime_is_merged_and_docker_restarted(repaired, repair_host, testbed) -> None:
    daemon = host_json(testbed, "/etc/docker/daemon.json")
    original = json.loads(repair_host)
    assert daemon["insecure-registries"] == original["insecure-registries"]
    assert daemon["log-opts"] == USER_KEYS["log-opts"]
    assert daemon["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert "nvidia" in docker_runtimes(testbed)


def test_second_run_and_check_mode_change_nothing(repaired, repair_inventory) -> None:
    again = prepare(repair_inventory)
    assert recap(again)[HOST]["changed"] == 0, again.stdout[-4000:]
    check = prepare(repair_inventory, "--check", "--diff")
    assert recap(check)[HOST]["changed"] == 0, check.stdout[-4000:]


def test_verify_passes_what_the_repair_fixed(repaired, repair_inventory, tmp_path) -> None:
    proc = run_playbook(repair_inventory, tmp_path, "-l", HOST, "-e", "host_verify_workload=false")
    found = checks(report_of(tmp_path, HOST))
    assert found["driver packages held"]["status"] == "ok", found["driver packages held"]
    assert found["driver packages held"]["reason"].startswith("nvidia-driver, nvidia-kernel-dkms")
    assert found["docker gpu runtime"]["status"] == "ok", found["docker gpu runtime"]
    assert "not blacklisted" not in found["kernel modules"]["reason"]
    assert recap(proc)[HOST]["failed"] == 0, proc.stdout[-3000:]


def engine_and_workspace(testbed: TestBed) -> tuple[str, str]:
    """dockerd's pid and the workspace's start time: both change when Docker restarts."""
    pid = testbed.ssh(HOST, "pidof dockerd").stdout.strip()
    started = testbed.ssh(
        HOST, "docker inspect -f '{{.State.Running}} {{.State.StartedAt}}' gpuprov-test-ws"
    ).stdout.strip()
    assert pid and started.startswith("true "), (pid, started)
    return pid, started


def test_no_restart_while_workspaces_run(
    repaired, repair_inventory, testbed, workload_image_ref: str
) -> None:
    """Config drift with a workspace running: daemon.json is fixed, docker is not restarted."""
    # A workspace that runs until stopped, whatever its stdin (sleep, not an idle shell).
    testbed.ssh(
        HOST,
        f"docker pull -q {workload_image_ref} >/dev/null && docker run -d "
        f"--label org.gpuprov.user=alice --name gpuprov-test-ws {workload_image_ref} "
        "sleep infinity",
    )
    daemon = host_json(testbed, "/etc/docker/daemon.json")
    del daemon["runtimes"]
    testbed.ssh(
        HOST,
        f"echo '{json.dumps(daemon)}' > /etc/docker/daemon.json && "
        "service docker restart >/dev/null && "
        "until docker version >/dev/null 2>&1; do sleep 0.2; done && "
        "docker start gpuprov-test-ws >/dev/null",
    )
    before = engine_and_workspace(testbed)
    proc = prepare(repair_inventory)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert engine_and_workspace(testbed) == before, proc.stdout[-6000:]
    assert task_changed(proc.stdout, "Merge the nvidia runtime into daemon.json"), proc.stdout
    assert not task_changed(proc.stdout, "Restart Docker to load the nvidia runtime"), proc.stdout
    assert "restart required on h100" in proc.stdout
    assert "/gpuprov-test-ws" in proc.stdout
    assert "nvidia" in host_json(testbed, "/etc/docker/daemon.json")["runtimes"]
    assert "nvidia" not in docker_runtimes(testbed)
    running = testbed.ssh(HOST, "docker inspect -f '{{.State.Running}}' gpuprov-test-ws").stdout
    assert running.strip() == "true"

    allowed = prepare(repair_inventory, "-e", "container_toolkit_allow_disruption=true")
    assert allowed.returncode == 0, allowed.stdout[-4000:]
    assert task_changed(allowed.stdout, "Restart Docker to load the nvidia runtime"), allowed.stdout
    assert "nvidia" in docker_runtimes(testbed)
