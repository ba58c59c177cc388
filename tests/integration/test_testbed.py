"""The test bed is real: separate hosts, engines, registry, SSH, outages, fake GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testbed import L40S_CAPTURE, BedBusy, HostSpec, TestBed

HOSTS = ("h100", "oldgpu", "notoolkit")


def test_each_host_is_its_own_machine(testbed: TestBed) -> None:
    seen = {}
    for host in HOSTS:
        out = testbed.ssh(host, "hostname; hostname -I; touch /root/i-am-$(hostname); ls /root")
        name, address, files = out.stdout.split("\n", 2)
        assert name == host
        assert testbed.host_address(host) in address.split()
        assert files.split() == [f"i-am-{host}"], "hosts must not share a filesystem"
        seen[host] = address
    assert len(set(seen.values())) == len(HOSTS)


def test_hosts_run_their_own_engines(testbed: TestBed, shell_image_ref: str) -> None:
    ids = set()
    for host in HOSTS:
        testbed.ssh(
            host,
            f"docker pull -q {shell_image_ref} >/dev/null && "
            f"docker create --name only-on-{host} {shell_image_ref} >/dev/null",
        )
        ids.add(testbed.ssh(host, "docker info -f '{{.ID}}'").stdout.strip())
    for host in HOSTS:
        names = testbed.ssh(host, "docker ps -a --format '{{.Names}}'").stdout.split()
        assert names == [f"only-on-{host}"]
        testbed.ssh(host, f"docker rm only-on-{host}")
    assert len(ids) == len(HOSTS), "every host must have a distinct engine"


def test_pull_by_digest_from_the_local_registry(testbed: TestBed, shell_image_ref: str) -> None:
    assert shell_image_ref.startswith(f"{testbed.registry}/gpuprov-test/shell@sha256:")
    testbed.ssh("oldgpu", f"docker pull {shell_image_ref}")
    digests = json.loads(
        testbed.ssh(
            "oldgpu", f"docker image inspect -f '{{{{json .RepoDigests}}}}' {shell_image_ref}"
        ).stdout
    )
    assert shell_image_ref in digests
    out = testbed.ssh("oldgpu", f"docker run --rm {shell_image_ref} sh -c 'echo ran'")
    assert out.stdout.strip() == "ran"


def _hook_requests(testbed: TestBed, host: str) -> list[str]:
    log = testbed.ssh(host, "cat /var/log/gpuprov-fake/hook.log 2>/dev/null || true").stdout
    return [json.loads(line)["NVIDIA_VISIBLE_DEVICES"] for line in log.splitlines()]


def test_gpu_request_reaches_the_fake_hook(testbed: TestBed, shell_image_ref: str) -> None:
    testbed.ssh("h100", f"docker pull -q {shell_image_ref}")
    before = len(_hook_requests(testbed, "h100"))
    testbed.ssh("h100", f"docker run --rm --gpus all {shell_image_ref} sh -c true")
    testbed.ssh("h100", f"docker run --rm --gpus '\"device=0\"' {shell_image_ref} sh -c true")
    assert _hook_requests(testbed, "h100")[before:] == ["all", "0"]
    # The capture has one GPU: asking for a second fails as on the real machine.
    missing = testbed.ssh(
        "h100",
        f"docker run --rm --gpus '\"device=0,1\"' {shell_image_ref} sh -c true",
        check=False,
    )
    assert missing.returncode != 0
    assert "unknown device" in missing.stderr


def test_no_toolkit_means_no_gpu_containers(testbed: TestBed, shell_image_ref: str) -> None:
    assert testbed.ssh("notoolkit", "command -v nvidia-ctk", check=False).returncode != 0
    testbed.ssh("notoolkit", f"docker pull -q {shell_image_ref}")
    out = testbed.ssh(
        "notoolkit", f"docker run --rm --gpus all {shell_image_ref} sh -c true", check=False
    )
    assert out.returncode != 0
    assert "could not select device driver" in out.stderr


def test_fake_nvidia_tools_replay_the_captures(testbed: TestBed) -> None:
    smi = testbed.ssh("h100", "nvidia-smi").stdout
    assert "NVIDIA H100 80GB HBM3" in smi and "Driver Version: 590.48.01" in smi
    assert "1.19.1" in testbed.ssh("h100", "nvidia-ctk --version").stdout
    assert "NVIDIA H100 80GB HBM3" in testbed.ssh("h100", "nvidia-container-cli info").stdout
    old = testbed.ssh(
        "oldgpu", "nvidia-smi --query-gpu=name,driver_version --format=csv,noheader"
    ).stdout
    assert old.strip() == "NVIDIA L40S, 535.104.05"
    assert "CUDA Version: 12.2" in testbed.ssh("oldgpu", "nvidia-smi").stdout


def test_fake_driver_states_follow_the_host_config(testbed: TestBed) -> None:
    try:
        testbed.reconfigure_host("oldgpu", capture=None)
        out = testbed.ssh("oldgpu", "nvidia-smi", check=False)
        assert out.returncode == 9
        assert "couldn't communicate with the NVIDIA driver" in out.stdout
        testbed.reconfigure_host("oldgpu", driver_mismatch=True)
        out = testbed.ssh("oldgpu", "nvidia-smi", check=False)
        assert (out.returncode, out.stdout.strip()) == (
            18,
            "Failed to initialize NVML: Driver/library version mismatch",
        )
    finally:
        testbed.reconfigure_host("oldgpu", capture=L40S_CAPTURE, driver_mismatch=False)
    assert testbed.ssh("oldgpu", "nvidia-smi -L").returncode == 0


def test_outage_and_recovery(testbed: TestBed) -> None:
    testbed.stop_host("notoolkit")
    try:
        down = testbed.ssh("notoolkit", "true", check=False, timeout=30)
        assert down.returncode == 255, "SSH must fail while the host is down"
        assert testbed.ssh("h100", "true").returncode == 0, "other hosts stay up"
    finally:
        testbed.start_host("notoolkit")
    out = testbed.ssh("notoolkit", "hostname; docker info -f '{{.ServerVersion}}'")
    assert out.stdout.split()[0] == "notoolkit"


def test_host_netns_reaches_the_hosts_loopback(testbed: TestBed) -> None:
    probe = testbed.in_host_netns("h100", ["nc", "-z", "-w", "2", "127.0.0.1", "22"])
    assert subprocess.run(probe, check=False).returncode == 0
    reg = testbed.in_netns(["nc", "-z", "-w", "2", *testbed.registry.split(":")])
    assert subprocess.run(reg, check=False).returncode == 0


def test_ansible_reaches_every_host(testbed: TestBed, inventory: Path) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    out = subprocess.run(
        [str(ansible), "all", "-i", str(inventory), "-m", "ansible.builtin.ping", "-o"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(HOSTS)


def test_a_second_bed_is_refused_while_one_runs(testbed: TestBed) -> None:
    with pytest.raises(BedBusy, match="only one may run at a time"):
        TestBed([HostSpec("other")]).start()
    assert testbed.ssh("h100", "true").returncode == 0, "the refused bed must not touch this one"
