"""The team image end to end on the test bed: build with the role (real torch, offline
wheels) on the bed's engine, push, pin; pull by digest on hosts with verification and
audit; a wrong digest refused; a full disk refused; an air-gapped host fed an archive.
Every playbook runs twice: the second run must change nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.pins import CPU
from support.playbooks import task_results
from testbed import TestBed

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
PROMISES = CPU


def playbook(
    inventory: Path, *args: str, extra: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), *args]
    if extra is not None:
        argv += ["-e", json.dumps(extra)]
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    if check:
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return done


def changed(out: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)}


@pytest.fixture(scope="module")
def built(testbed: TestBed, docker_env: dict, base_image: str, tmp_path_factory) -> dict:
    """The team image built by the role on the bed's engine from the controller, pushed,
    and the pin the role wrote. Returns {'pin': ..., 'pin_file': ..., 'out': ...}."""
    if not TORCH_WHEEL.is_file():
        pytest.skip(f"no real torch CPU wheel at {TORCH_WHEEL} (see TESTBED.md)")
    work = tmp_path_factory.mktemp("build")
    inventory = work / "hosts.yml"
    pin_file = work / "image.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "builder": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            }
        )
    )
    extra = {
        "gpuprov_image": {
            "reference": f"{testbed.registry}/team/pytorch-cpu",
            "source": "build",
            "flavour": "cpu",
            "promises": PROMISES,
        },
        "gpuprov_registry": {"address": testbed.registry, "insecure": True},
        "team_image_docker_host": docker_env["DOCKER_HOST"],
        "team_image_base_image": base_image,
        "team_image_base_local": True,
        "team_image_apt_packages": [],
        "team_image_wheel_source": "local",
        "team_image_download_torch_index": False,
        "team_image_build_dir": str(work / "context"),
        "team_image_push": True,
        "team_image_pin_file": str(pin_file),
    }
    first = playbook(inventory, "playbooks/image.yml", extra=extra)
    second = playbook(inventory, "playbooks/image.yml", extra=extra)
    pin = yaml.safe_load(pin_file.read_text())["gpuprov_image"]
    return {"pin": pin, "pin_file": pin_file, "first": first.stdout, "second": second.stdout}


def test_the_build_pushes_and_pins_a_real_torch_image(
    built: dict, testbed: TestBed, docker_env: dict
) -> None:
    pin = built["pin"]
    assert pin["reference"] == f"{testbed.registry}/team/pytorch-cpu"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", pin["digest"])
    assert pin["promises"] == PROMISES and pin["source"] == "pull"
    assert changed(built["second"]) == {"builder": 0}, built["second"][-3000:]
    # The role printed the same pin it wrote.
    assert pin["digest"] in built["first"]
    env = {**os.environ, **docker_env}
    ref = f"{pin['reference']}@{pin['digest']}"
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            ref,
            "-W",
            "error::UserWarning",
            "-c",
            "import numpy, torch; print(torch.__version__, numpy.__version__, "
            "torch.ones(2, 2).sum().item(), __import__('os').getuid())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    version, numpy_version, total, uid = run.stdout.split()
    assert (version, total) == ("2.13.0+cpu", "4.0")
    assert numpy_version == "2.3.5" and uid != "0", "numpy pinned; never root by default"
    # `gpuprov image pin` prints the same pin from the engine.
    tags = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .RepoTags}}", pin["id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tag = next(t for t in json.loads(tags.stdout) if t.startswith(pin["reference"] + ":build-"))
    printed = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "image", "pin", tag],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert yaml.safe_load(printed.stdout)["gpuprov_image"] == pin


def hosts_inventory(testbed: TestBed, path: Path, **host_vars: dict) -> Path:
    return testbed.write_inventory(path, host_vars or None)


def image_on(testbed: TestBed, host: str, ref: str) -> dict | None:
    out = testbed.ssh(host, f"docker image inspect {ref}", check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def test_pull_by_digest_verifies_audits_and_is_idempotent(
    built: dict, testbed: TestBed, tmp_path: Path
) -> None:
    pin = built["pin"]
    inventory = hosts_inventory(testbed, tmp_path / "hosts.yml")
    extra = {"gpuprov_image": pin, "team_image_min_free": "1g"}
    first = playbook(inventory, "playbooks/image.yml", "-l", "h100,oldgpu", extra=extra)
    # One digest, one audit for the fleet: it runs on one host, both read its verdict.
    audited = task_results(first.stdout, "Audit the team image before anything uses it")
    assert len(audited) == 1, audited
    assert "fatal" not in audited[0]
    assert pin["size"] > 0, "gpuprov's pin records the image's unpacked size"
    for host in ("h100", "oldgpu"):
        found = image_on(testbed, host, f"{pin['reference']}@{pin['digest']}")
        assert found and found["Id"] == pin["id"]
        assert f"{pin['reference']}@{pin['digest']}" in found["RepoDigests"]
    second = playbook(inventory, "playbooks/image.yml", "-l", "h100,oldgpu", extra=extra)
    assert changed(second.stdout) == {"h100": 0, "oldgpu": 0}


def test_a_wrong_digest_is_refused(
    built: dict, testbed: TestBed, tmp_path: Path, shell_image_ref: str
) -> None:
    pin = built["pin"]
    inventory = hosts_inventory(testbed, tmp_path / "hosts.yml")
    # A digest the registry does not have.
    missing = {**pin, "digest": "sha256:" + "0" * 64}
    out = playbook(
        inventory,
        "playbooks/image.yml",
        "-l",
        "h100",
        extra={"gpuprov_image": missing},
        check=False,
    )
    assert out.returncode != 0
    assert f"could not pull {pin['reference']}@sha256:{'0' * 64}" in out.stdout
    assert "manifest unknown" in out.stdout
    # Another image of the same repository: pulled, then refused by its ID and labels.
    other = testbed.push_image(testbed.shell_image(), "team/pytorch-cpu:other")
    wrong = {**pin, "digest": other.split("@")[1]}
    out = playbook(
        inventory, "playbooks/image.yml", "-l", "h100", extra={"gpuprov_image": wrong}, check=False
    )
    assert out.returncode != 0
    assert "the team image on this host does not match the pin" in out.stdout
    assert f"the pin says id {pin['id']}" in out.stdout


def test_a_full_disk_stops_the_pull_before_it_starts(
    built: dict, testbed: TestBed, tmp_path: Path
) -> None:
    pin = built["pin"]
    testbed.ssh("notoolkit", f"docker image rm -f {pin['id']} >/dev/null 2>&1 || true")
    inventory = hosts_inventory(testbed, tmp_path / "hosts.yml")
    out = playbook(
        inventory,
        "playbooks/image.yml",
        "-l",
        "notoolkit",
        extra={"gpuprov_image": pin, "team_image_min_free": "100t"},
        check=False,
    )
    assert out.returncode != 0
    assert "not enough disk space for" in out.stdout and "100.0 TiB needed" in out.stdout
    assert image_on(testbed, "notoolkit", pin["id"]) is None


def test_an_air_gapped_host_gets_the_archive_and_verifies_it(
    built: dict, testbed: TestBed, tmp_path: Path
) -> None:
    pin = built["pin"]
    host = "notoolkit"
    registry_ip, port = testbed.registry.split(":")
    block = f"OUTPUT -d {registry_ip} -p tcp --dport {port} -j REJECT"
    testbed.ssh(host, f"docker image rm -f {pin['id']} >/dev/null 2>&1 || true")
    testbed.ssh(host, f"iptables -I {block}")
    try:
        cut = testbed.ssh(host, f"docker pull {pin['reference']}@{pin['digest']}", check=False)
        assert cut.returncode != 0, "the host must not reach the registry"
        inventory = hosts_inventory(
            testbed, tmp_path / "hosts.yml", notoolkit={"team_image_transfer": "archive"}
        )
        extra = {
            "gpuprov_image": pin,
            "team_image_archive_dir": str(tmp_path / "archives"),
            "team_image_min_free": "1g",
        }
        first = playbook(inventory, "playbooks/image.yml", "-l", f"h100,{host}", extra=extra)
        assert "Load the archive" in first.stdout
        found = image_on(testbed, host, pin["id"])
        assert found and found["Id"] == pin["id"] and not found["RepoDigests"]
        assert f"{pin['reference']}:pinned-{pin['digest'][7:19]}" in found["RepoTags"]
        second = playbook(inventory, "playbooks/image.yml", "-l", f"h100,{host}", extra=extra)
        assert changed(second.stdout) == {"h100": 0, host: 0}, second.stdout[-3000:]
    finally:
        testbed.ssh(host, f"iptables -D {block}", check=False)
