"""What a rollout says, and whether a host's workspaces would move."""

from __future__ import annotations

import pytest

from gpuprov.core import rollout

DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32
PIN = {"reference": "registry.test:5000/team/pytorch", "digest": DIGEST, "id": IMAGE_ID}


@pytest.mark.parametrize(
    ("running", "moves"),
    [
        (f"registry.test:5000/team/pytorch@{DIGEST}", False),
        (PIN["id"], False),  # hosts fed by an archive run the image by its ID
        ("registry.test:5000/team/pytorch@sha256:" + "00" * 32, True),
        ("", True),  # nothing runs yet: the rollout starts the workspaces
    ],
)
def test_moves_unless_the_host_runs_the_pin(running, moves):
    assert rollout.moves(running, PIN) is moves


def test_a_built_pin_always_moves():
    assert rollout.moves("localhost/team:built", {"reference": "localhost/team"})


def test_plan_names_the_gates_that_run():
    said = rollout.plan_message("gpu1", "old@sha256:1", "new@sha256:2", audit=True, verify=False)
    assert said == (
        "would move the workspaces on gpu1 from old@sha256:1 to new@sha256:2 behind the audit, "
        "the health checks"
    )
    said = rollout.plan_message("gpu1", "", "", audit=False, verify=True)
    assert "from nothing to the image built in the run behind the host gates, the health" in said


@pytest.mark.parametrize(
    ("previous", "rollback", "says"),
    [
        ("", None, "It ran no workspace before, so there is nothing to roll back to"),
        ("old@sha256:1", "Start: port taken", "ROLLBACK FAILED too (Start: port taken)"),
        ("old@sha256:1", None, "Its workspaces are back on old@sha256:1 and answer; hosts"),
    ],
)
def test_stop_message_says_where_the_host_was_left(previous, rollback, says):
    said = rollout.stop_message("gpu1", "Check Jupyter: timed out", previous, rollback)
    assert said.startswith("rollout stopped on gpu1: Check Jupyter: timed out. ")
    assert says in said
    assert said.endswith("Fix the cause, then run playbooks/upgrade.yml again.")
