"""gpuprov's own commands, captured on a real H200 (driver 580.159.04, CUDA 13.0) with the
CUDA workload script the team image runs, replayed through the facts, the gates and the
status probe's parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuprov.core import host_facts, probe
from gpuprov.core.verify import Status, verify_host

CAPTURE = json.loads(
    (
        Path(__file__).resolve().parents[1] / "fixtures/gpuprov-captures/h200__580.159.04.json"
    ).read_text()
)
WORKLOAD = CAPTURE["workload"]
H200 = {"required": True, "count": 1, "model": "H200"}


@pytest.fixture(scope="module")
def facts():
    ran = {"started": WORKLOAD["rc"] == 0, "error": "", "output": WORKLOAD["out"]}
    return host_facts.host_facts(CAPTURE["raw"], None, ran)


def gates(facts, promises: dict) -> dict[str, tuple[Status, str]]:
    checks = verify_host(facts, host_facts.expectations(H200), host_facts.gate_pin(promises))
    return {check.name: (check.status, check.reason) for check in checks}


def test_the_h200_is_read_as_it_is(facts):
    assert (facts.driver_version, facts.cuda_version) == ("580.159.04", "13.0")
    [gpu] = facts.gpus
    assert gpu.name == "NVIDIA H200" and gpu.compute_capability == "9.0"
    assert gpu.memory_total_mib == 143771 and gpu.ecc_enabled and not gpu.mig_enabled


def test_a_cu130_image_passes_every_gate_this_machine_can_pass(facts):
    found = gates(facts, {"torch": "2.11.0+cu130", "cuda": "13.0"})
    for gate in ("nvidia driver", "driver vs image CUDA", "gpu count", "gpu model",
                 "compute capability", "gpu memory health", "mig", "cuda workload"):  # fmt: skip
        assert found[gate][0] is Status.OK, (gate, found[gate])
    assert "580.65.06" in found["driver vs image CUDA"][1]
    # The machine has no Docker and no Container Toolkit: said, never taken for ok.
    assert found["container toolkit"][0] is Status.FAIL
    assert found["docker gpu runtime"][0] is Status.FAIL


def test_a_cu132_image_needs_a_newer_driver_than_this_one(facts):
    found = gates(facts, {"torch": "2.14.0+cu132", "cuda": "13.2"})
    status, reason = found["driver vs image CUDA"]
    assert status is Status.FAIL and "580.159.04 < 595.45.04" in reason
    assert found["compute capability"][0] is Status.WARN  # cu132's arch list: unknown


def test_the_workload_ran_torch_on_the_gpu(facts):
    assert facts.workload is not None and facts.workload.torch_ok
    assert facts.workload.nvidia_smi_rc == 0


def test_the_status_probe_reads_the_same_machine():
    status = probe.parse(CAPTURE["probe"])
    assert status.driver == "580.159.04"
    assert [gpu.name for gpu in status.gpus] == ["NVIDIA H200"]
    assert status.docker is None and any("Docker does not answer" in p for p in status.problems)
