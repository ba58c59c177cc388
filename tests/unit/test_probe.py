"""The status probe's parser, on output assembled from real nvidia-smi captures."""

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
    assert "Docker does not answer" in status.problems
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
