"""Every Molecule scenario under molecule/, against hosts of the test bed.

Molecule's `default` driver with managed: false leaves the hosts to us: the
bed starts them, and each scenario reads their inventory from
GPUPROV_MOLECULE_INVENTORY.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_converges_idempotently_and_verifies(scenario, testbed, tmp_path):
    inventory = testbed.write_inventory(tmp_path / "hosts.yml")
    env = {
        **os.environ,
        "GPUPROV_MOLECULE_INVENTORY": str(inventory),
        "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "MOLECULE_NO_LOG": "false",
    }
    env.pop("ANSIBLE_CONFIG", None)
    # Molecule remembers "prepared" between runs; each run here is on a new bed.
    subprocess.run(
        ["molecule", "reset", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    result = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "idempotence" in output.lower()
