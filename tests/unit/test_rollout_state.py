"""A rollout's record on a host, on real files: the lock, the previous images, the history."""

from __future__ import annotations

import json

import pytest

from gpuprov.core import rollout_state

RUN = {"id": "ctl:100:t1", "controller": "ctl", "pid": 100}
LATER = {"id": "ctl:200:t2", "controller": "ctl", "pid": 200}
RUNNING = {"gpuprov-alice-jupyter": "v2", "gpuprov-alice-ssh": "v2"}


def test_a_first_rollout_records_what_each_workspace_ran(tmp_path):
    state, changed = rollout_state.begin(str(tmp_path), RUN, "v3", RUNNING, "", "t1")
    assert changed
    assert state["previous"] == RUNNING
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk == state
    assert rollout_state.read(str(tmp_path)) == {"state": state, "history": []}
    # The same run again (a retried task) changes nothing.
    assert rollout_state.begin(str(tmp_path), RUN, "v3", RUNNING, "", "t1") == (state, False)


def test_a_run_resuming_a_killed_one_keeps_the_images_from_before_any_moved(tmp_path):
    """Killed after alice's Jupyter moved: her previous image is v2, not the v3 she runs now."""
    rollout_state.begin(str(tmp_path), RUN, "v3", RUNNING, "", "t1")
    half_moved = {"gpuprov-alice-jupyter": "v3", "gpuprov-alice-ssh": "v2"}
    state, _ = rollout_state.begin(str(tmp_path), LATER, "v3", half_moved, RUN["id"], "t2")
    assert state["previous"] == RUNNING
    assert state["run"] == LATER
    assert state["since"] == "t1"
    assert state["resumed_from"] == RUN["id"]


def test_a_second_rollout_cannot_take_a_host_it_did_not_see_free(tmp_path):
    rollout_state.begin(str(tmp_path), RUN, "v3", RUNNING, "", "t1")
    with pytest.raises(rollout_state.RolloutStateError, match=r"another rollout holds this host"):
        rollout_state.begin(str(tmp_path), LATER, "v4", RUNNING, "", "t2")
    with pytest.raises(rollout_state.RolloutStateError, match="not closing it"):
        rollout_state.finish(str(tmp_path), LATER, "rolled_out", "v4", "t2")
    assert json.loads((tmp_path / "state.json").read_text())["run"] == RUN


def test_finishing_writes_the_history_and_frees_the_host(tmp_path):
    rollout_state.begin(str(tmp_path), RUN, "v3", RUNNING, "", "t1")
    entry = rollout_state.finish(str(tmp_path), RUN, "rolled_out", "v3", "t3")
    assert entry == {
        "time": "t3", "run": RUN["id"], "outcome": "rolled_out", "image": "v3",
        "target": "v3", "previous": RUNNING, "resumed_from": "",
    }  # fmt: skip
    assert not (tmp_path / "state.json").exists()
    rollout_state.begin(str(tmp_path), LATER, "v2", {"gpuprov-alice-jupyter": "v3"}, "", "t4")
    rollout_state.finish(str(tmp_path), LATER, "rolled_back", "v3", "t5")
    record = rollout_state.read(str(tmp_path))
    assert record["state"] is None
    assert [e["outcome"] for e in record["history"]] == ["rolled_out", "rolled_back"]


def test_an_unknown_outcome_and_a_torn_history_line(tmp_path):
    with pytest.raises(rollout_state.RolloutStateError, match="unknown outcome"):
        rollout_state.finish(str(tmp_path), RUN, "done", "v3", "t1")
    rollout_state.finish(str(tmp_path), RUN, "rolled_out", "v3", "t1")
    with (tmp_path / "history.jsonl").open("a") as history:
        history.write('{"time": "t2", "outco')  # the controller's host lost power mid-write
    assert len(rollout_state.history(str(tmp_path))) == 1


def test_an_unreadable_state_is_an_error_that_says_what_the_file_is(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(rollout_state.RolloutStateError) as error:
        rollout_state.read(str(tmp_path))
    assert str(tmp_path / "state.json") in str(error.value)
    assert "remove it only when no rollout runs there" in str(error.value)
