"""The status probe's parser, on output assembled from real nvidia-smi captures."""

import dataclasses
import shlex
import subprocess
from pathlib import Path

import pytest

from gpuprov.core import image_pin, probe
from gpuprov.core.nvidia import QUERY_GPU_FIELDS, QUERY_GPU_SHELL

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures/nvidia-smi/captures"
H100 = CAPTURES / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"


def h100_row() -> str:
    """One GPU row for gpuprov's query, with the name and driver of the real H100 capture."""
    text = H100.read_text()
    assert "NVIDIA H100 80GB HBM3" in text and "590.48.01" in text
    values = {
        "index": "0",
        "name": "NVIDIA H100 80GB HBM3",
        "driver_version": "590.48.01",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "pci.bus_id": "00000000:18:00.0",
        "memory.total": "81559",
        "compute_cap": "9.0",
    }
    return ", ".join(values.get(field, "[N/A]") for field in QUERY_GPU_FIELDS)


def output(**sections: tuple[str, int]) -> str:
    lines = []
    for name, (text, rc) in sections.items():
        lines += [f"{probe.SEPARATOR} {name.replace('_', '-')}", text, f"{probe.SEPARATOR} rc={rc}"]
    return "\n".join(lines)


def test_a_healthy_host():
    status = probe.parse(
        output(
            hostname=("gpu-a", 0),
            nvidia_smi=(h100_row(), 0),
            nvidia_ctk=("NVIDIA Container Toolkit CLI version 1.17.8\ncommit: abc", 0),
            docker=("28.2.2", 0),
            workspaces=("alice gpuprov-alice-jupyter Up 2 hours", 0),
            images=("reg/team@sha256:aa", 0),
        )
    )
    assert status.hostname == "gpu-a"
    assert status.driver == "590.48.01"
    assert status.gpus and "H100" in status.gpus[0].name
    assert status.toolkit == "1.17.8"
    assert status.docker == "28.2.2"
    assert status.workspaces == ("alice gpuprov-alice-jupyter Up 2 hours",)
    assert status.images == ("reg/team@sha256:aa",)
    assert status.problems == ()


def test_a_host_without_driver_or_docker_says_why():
    message = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    status = probe.parse(
        output(
            hostname=("gpu-b", 0),
            nvidia_smi=(message, 9),
            nvidia_ctk=("sh: 1: nvidia-ctk: not found", 127),
            docker=("Cannot connect to the Docker daemon", 1),
            workspaces=("", 1),
        )
    )
    assert status.driver == "not-loaded"
    assert status.toolkit is None and status.docker is None
    assert "Docker does not answer: Cannot connect to the Docker daemon" in status.problems
    assert any("kernel module is not loaded" in p for p in status.problems)


def test_a_machine_without_nvidia_tools_is_not_a_problem_by_itself():
    status = probe.parse(
        output(
            hostname=("laptop", 0),
            nvidia_smi=("sh: 1: nvidia-smi: not found", 127),
            nvidia_ctk=("", 127),
            docker=("20.10.24", 0),
            workspaces=("", 0),
        )
    )
    assert status.driver == "not-installed"
    assert status.problems == ()


DIGEST = "sha256:" + "a" * 64
PIN = {"reference": "reg/team", "digest": DIGEST, "id": "sha256:11"}


def test_the_pin_goes_by_its_digest_and_its_id():
    assert image_pin.run_names(PIN) == {f"reg/team@{DIGEST}", "sha256:11"}
    assert image_pin.run_names({"reference": "reg/team", "source": "build"}) == set()
    assert image_pin.run_names(None) == set()


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ((), "-"),
        ((f"reg/team@{DIGEST}", f"reg/team@{DIGEST}"), "pin"),
        (("sha256:11",), "pin"),
        ((f"reg/team@{DIGEST}", "reg/team@sha256:00", "reg/team@sha256:00"), "1/3 on pin"),
    ],
)
def test_pin_state_tells_a_rollout_apart(images, expected):
    assert probe.pin_state(images, image_pin.run_names(PIN)) == expected


L40S = CAPTURES / "linux-x86_64__nvidia-l40s__595.80.txt"
VERSION_610 = CAPTURES.parent / "driver-610" / "version.txt"


def _help_of(path: Path) -> str:
    text = path.read_text()
    start = text.index("# $ nvidia-smi --help-query-gpu")
    body = text[start:].split("\n", 2)[2]
    return body[: body.index("\n####")]


@pytest.mark.parametrize(
    ("capture", "wanted", "unwanted"),
    [(L40S, "kmd_version", "driver_version"), (H100, "driver_version", "kmd_version")],
)
def test_the_probe_shell_asks_for_the_fields_the_drivers_help_offers(
    tmp_path, capture, wanted, unwanted
):
    assert f"sh -c {shlex.quote(QUERY_GPU_SHELL)}" in probe.PROBE_SCRIPT
    (tmp_path / "help.txt").write_text(_help_of(capture))
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = --help-query-gpu ]; then cat "$(dirname "$0")/help.txt"; '
        'else printf "%s\\n" "$@"; fi\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    proc = subprocess.run(["sh", "-c", QUERY_GPU_SHELL], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    query, fmt = proc.stdout.splitlines()
    fields = query.removeprefix("--query-gpu=").split(",")
    assert wanted in fields and unwanted not in fields
    assert fields[:2] == ["index", "name"] and "remapped_rows.failure" in fields
    assert fmt == "--format=csv,nounits"


def test_the_driver_version_comes_from_nvidia_smi_version():
    status = probe.parse(
        output(
            hostname=("gpu-610", 0),
            nvidia_smi=(h100_row(), 0),
            nvidia_smi_version=(VERSION_610.read_text(), 0),
            nvidia_ctk=("NVIDIA Container Toolkit CLI version 1.19.1", 0),
            docker=("28.2.2", 0),
            workspaces=("", 0),
            images=("", 0),
        )
    )
    assert status.driver == "610.57.04"
    assert status.problems == ()


def _healthy(**changes) -> probe.HostStatus:
    status = probe.parse(
        output(
            hostname=("gpu-a", 0),
            nvidia_smi=(h100_row(), 0),
            nvidia_ctk=("NVIDIA Container Toolkit CLI version 1.19.1", 0),
            docker=("28.2.2", 0),
            workspaces=("alice gpuprov-alice-jupyter Up 2 hours (healthy)", 0),
            images=("reg/team@sha256:aa", 0),
        )
    )
    return dataclasses.replace(status, **changes)


def test_a_docker_that_refuses_the_user_says_how_to_fix_it():
    status = probe.parse(
        output(
            hostname=("gpu-c", 0),
            nvidia_smi=(h100_row(), 0),
            docker=(
                "permission denied while trying to connect to the Docker daemon socket at "
                "unix:///var/run/docker.sock",
                1,
            ),
        )
    )
    (problem,) = status.problems
    assert problem.startswith("Docker does not answer: permission denied")
    assert "ansible_become: true" in problem


def test_judge_names_what_needs_a_person():
    assert probe.judge(_healthy(), {"reg/team@sha256:aa"}) == []
    off_pin = probe.judge(_healthy(), {"reg/team@sha256:bb"})
    assert off_pin == ["workspaces off the pin: 0/1 on pin"]
    no_toolkit = probe.judge(_healthy(toolkit=None), set())
    assert no_toolkit == ["NVIDIA Container Toolkit not installed (nvidia-ctk missing)"]
    sick = _healthy(workspaces=("bob gpuprov-bob-ssh Up 1 minute (unhealthy)",))
    assert probe.judge(sick, set()) == [
        "workspace not healthy: bob gpuprov-bob-ssh Up 1 minute (unhealthy)"
    ]
    cpu = _healthy(driver="not-installed", gpus=(), toolkit=None)
    assert probe.judge(cpu, set(), gpu_required=False) == []
    assert probe.judge(cpu, set())[0] == "no usable GPU driver (not-installed)"


def test_the_report_its_exit_status_and_table():
    pinned = {"reg/team@sha256:aa"}
    rows = [
        probe.host_report("gpu-b", _healthy(toolkit=None), None, False, 0.4, pinned),
        probe.host_report("gpu-a", _healthy(), None, False, 0.3, pinned),
    ]
    assert [r["state"] for r in rows] == ["problems", "ok"]
    assert probe.exit_code(rows[1:]) == 0 and probe.exit_code(rows) == 1
    cut = probe.host_report(
        "gpu-c", _healthy(), "timed out after 5 s in nvidia-smi", True, 5, pinned
    )
    gone = probe.host_report("gpu-d", None, "connection refused on gpu-d:22", False, 0.1, pinned)
    assert (cut["state"], gone["state"]) == ("timeout", "unreachable")
    assert probe.exit_code([*rows, gone]) == 2
    table = probe.render([*rows, cut, gone]).splitlines()
    assert table[0].split() == [
        "host", "hostname", "driver", "gpus", "toolkit", "docker", "workspaces", "image",
        "drift",
    ]  # fmt: skip
    assert table[1].split()[:3] == ["gpu-a", "gpu-a", "590.48.01"]
    # Its workspace's drift inspection did not answer (this probe ran none): unknown.
    assert table[1].split()[-2:] == ["1", "unknown"] and rows[1]["drift"] == "1 unknown"
    assert table[2].startswith("gpu-b") and table[3] == (
        "  ! NVIDIA Container Toolkit not installed (nvidia-ctk missing)"
    )
    assert table[5] == "  ! timed out after 5 s in nvidia-smi"
    assert table[6].split() == ["gpu-d", "UNREACHABLE"]
    assert table[7] == "  ! connection refused on gpu-d:22"
    long_name = probe.host_report("gpu-" + "x" * 40, _healthy(), None, False, 0.1, pinned)
    widths = {len(line.split()[0]) for line in probe.render([long_name]).splitlines()[1:2]}
    assert widths == {44}, "a long hostname must widen its column, not break the row"


def test_the_probe_runs_under_the_hosts_own_timeout_and_sudo_when_asked():
    command = probe.remote_command(7)
    assert command.startswith("if command -v timeout")
    assert "exec timeout -k 2 7 sh -c " in command and "sudo" not in command
    become = probe.remote_command(7, "root")
    assert "exec timeout -k 2 7 sudo -n -u root -- sh -c " in become
    done = subprocess.run(["sh", "-c", probe.remote_command(5)], capture_output=True, text=True)
    assert probe.parse(done.stdout).hostname != "?"


def test_the_running_section_is_the_one_without_an_exit_status():
    partial = output(hostname=("gpu-a", 0)) + f"\n{probe.SEPARATOR} nvidia-smi\n"
    assert probe.running_section(partial) == "nvidia-smi"
    assert probe.running_section(output(hostname=("gpu-a", 0))) is None
