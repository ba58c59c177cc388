"""The status probe's parser, on output assembled from real nvidia-smi captures."""

from pathlib import Path

import pytest

from gpuprov.core import image_pin, probe
from gpuprov.core.nvidia import QUERY_GPU_FIELDS

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
