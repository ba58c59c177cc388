"""A rollout's rules: whether a host moves, its batches and budget, the pre-flight's verdict,
which run holds a host, and where a rollback goes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from gpuprov.core import rollout, rollout_settings, variables

DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32
PIN = {"reference": "registry.test:5000/team/pytorch", "digest": DIGEST, "id": IMAGE_ID}


ALICE = {"user": "alice", "kind": "jupyter"}
CAROL = {"user": "carol", "kind": "ssh"}
PINNED = f"registry.test:5000/team/pytorch@{DIGEST}"
OLD = "registry.test:5000/team/pytorch@sha256:" + "00" * 32


@pytest.mark.parametrize(
    ("running", "moves"),
    [
        ({"gpuprov-alice-jupyter": PINNED, "gpuprov-carol-ssh": PINNED}, False),
        # hosts fed by an archive run the image by its ID
        ({"gpuprov-alice-jupyter": IMAGE_ID, "gpuprov-carol-ssh": PINNED}, False),
        ({"gpuprov-alice-jupyter": PINNED, "gpuprov-carol-ssh": OLD}, True),
        ({"gpuprov-alice-jupyter": PINNED}, True),  # carol's workspace is new
        ({}, True),  # nothing runs yet: the rollout starts the workspaces
    ],
)
def test_a_host_moves_unless_every_planned_workspace_runs_the_pin(running, moves):
    assert rollout.host_moves([ALICE, CAROL], running, PINNED, {}, None, PIN) is moves


def test_a_host_with_an_unfinished_record_always_moves():
    running = {"gpuprov-alice-jupyter": PINNED}
    assert rollout.host_moves([ALICE], running, PINNED, {}, {"target": PINNED}, PIN)
    assert not rollout.host_moves([], {}, PINNED, {}, None, PIN)


def test_a_rollback_moves_the_workspaces_not_on_their_own_image():
    running = {"gpuprov-alice-jupyter": PINNED, "gpuprov-carol-ssh": OLD}
    back = {"gpuprov-alice-jupyter": OLD, "gpuprov-carol-ssh": OLD}
    assert rollout.host_moves([ALICE, CAROL], running, OLD, back, None, PIN)
    assert not rollout.host_moves([CAROL], running, OLD, back, None, PIN)


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


@pytest.mark.parametrize(
    ("given", "sizes"),
    [
        (None, [1, "25%", "100%"]),
        ("", [1, "25%", "100%"]),
        ([2, "50%"], [2, "50%"]),
        ("1,25%,100%", [1, "25%", "100%"]),  # -e gpuprov_rollout_batches=1,25%,100%
        (" 3 , 010% ", [3, "10%"]),
        (["1", "100%"], [1, "100%"]),
    ],
)
def test_batches_come_as_a_list_or_a_comma_list(given, sizes):
    assert rollout_settings.batches(given) == sizes


@pytest.mark.parametrize("given", ["0", [1, 0], "1,,2", "101%", "0%", "quarter", [True], [], "-1"])
def test_a_batch_that_is_no_size_is_refused_with_the_forms_that_work(given):
    with pytest.raises(rollout_settings.RolloutError) as error:
        rollout_settings.batches(given)
    assert "gpuprov_rollout_batches" in str(error.value)
    assert "25%" in str(error.value)


HOSTS = [f"gpu{n}" for n in range(1, 9)]


@pytest.mark.parametrize(
    ("sizes", "cut"),
    [
        ([1, "25%", "100%"], [1, 2, 5]),
        ([2], [2, 2, 2, 2]),
        (["10%"], [1] * 8),  # a percentage never rounds down to no host
        ([1, "50%"], [1, 4, 3]),  # the last size repeats until every host had its turn
    ],
)
def test_the_schedule_cuts_hosts_as_ansibles_serial_does(sizes, cut):
    schedule = rollout_settings.schedule(HOSTS, sizes)
    assert [len(batch) for batch in schedule] == cut
    assert [host for batch in schedule for host in batch] == HOSTS


@pytest.mark.parametrize(
    ("given", "allowed"), [(0, 0), ("2", 2), ("25%", 2), ("0%", 0), (None, 0), ("100%", 8)]
)
def test_the_failure_budget_is_hosts_or_a_percentage(given, allowed):
    assert rollout_settings.allowed_failures(given, 8) == allowed


@pytest.mark.parametrize("given", ["many", "-1", "150%", True])
def test_a_failure_budget_that_is_no_count_is_refused(given):
    with pytest.raises(rollout_settings.RolloutError, match="gpuprov_rollout_max_failed"):
        rollout_settings.allowed_failures(given, 8)


def test_a_lost_host_counts_against_the_budget_like_a_failed_one():
    """A host that began its batch and never got through it failed or was lost."""
    facts = {
        "a": {"rollout_began": True, "rollout_done": True},
        "b": {"rollout_began": True},
        "c": {},
        "d": {"rollout_began": True, "rollout_done": True},
    }
    said = rollout.budget_message(facts, ["a", "b", "c", "d"])
    assert said.startswith("rollout stopped: 1 host(s) failed or became unreachable (b), more ")
    assert "later batches do not start" in said
    assert rollout.budget_message(facts, ["a", "c"]) == "", "c's batch never began"
    # The team's budget, read from any host: one host of four, or 25%.
    for budget in (1, "1", "25%"):
        team = {h: {**f, "gpuprov_rollout_max_failed": budget} for h, f in facts.items()}
        assert rollout.budget_message(team, ["a", "b", "c", "d"]) == "", budget


def test_a_host_stopped_under_the_rollback_action_counts_though_it_is_through_its_batch():
    facts = {
        "a": {"rollout_began": True, "rollout_done": True, "rollout_moved": True},
        "b": {"rollout_began": True, "rollout_done": True, "rollout_stopped": "stopped on b"},
    }
    assert rollout.failures(facts, ["a", "b"]) == {"b": "stopped"}
    assert "(b)" in rollout.budget_message(facts, ["a", "b"])
    assert rollout.moved_hosts(facts, ["a", "b"]) == ["a"]


def test_the_advice_says_what_happens_to_the_hosts_already_moved():
    over = "rollout stopped: 1 host(s) failed or became unreachable (b), more than ..."
    stop = rollout.failure_advice(over, "stop", [])
    assert stop.startswith(over) and "hosts already moved stay" in stop
    assert "gpuprov_rollout_failure_action: rollback" in stop
    back = rollout.failure_advice(over, "rollback", ["a", "c"])
    assert "the hosts this run moved go back to the images their records name (a, c)" in back
    assert "(none had moved)" in rollout.failure_advice(over, "rollback", [])


def test_a_manual_promotion_names_the_canary_and_how_to_go_on():
    said = rollout.promotion_message(["h100"], "reg/team@sha256:ab")
    assert said.startswith("canary h100 runs reg/team@sha256:ab and passed the health gate")
    assert "run the same playbooks/upgrade.yml again" in said


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("gpuprov_rollout_failure_action", "rollback", "undo"),
        ("gpuprov_rollout_promote", "manual", "ask"),
    ],
)
def test_the_rollout_choices_are_checked_by_the_schema(key, good, bad):
    schema = variables.TEAM_VARIABLES[key]
    assert list(schema.validate(good, key)) == []
    problems = list(schema.validate(bad, key))
    assert problems and all(problem.path == key for problem in problems), problems
    assert good in problems[0].message


def test_the_preflight_lists_every_blocking_host_and_the_unreachable_ones():
    said = rollout.preflight_message(
        ["a", "b", "c", "d"], ["a", "b", "d"], {"a": "", "b": "Pull the pinned digest: no space"}
    )
    assert said.startswith("pre-flight refused the rollout, 2 of 4 host(s) would block it, so ")
    assert "no workspace was touched anywhere" in said
    assert (
        "b: Pull the pinned digest: no space; c: unreachable, or lost during the pre-flight."
        in (said)
    )
    assert rollout.preflight_message(["a", "b"], ["a", "b"], {"a": "", "b": ""}) == ""


def test_the_plan_names_the_canary_and_each_batch_with_its_workspaces():
    lines = rollout.plan_table(
        ["a", "b", "c"], [1, "100%"], {"a": [ALICE, CAROL], "b": [], "c": [CAROL]}
    )
    assert lines == [
        "canary: a (alice jupyter, carol ssh)",
        "batch 2: b (no workspace), c (carol ssh)",
    ]


def test_a_run_names_the_playbook_process_not_its_forked_workers():
    run = rollout.controller_run("2026-12-04T20:00:00+00:00")
    assert run["pid"] == os.getpid()  # pytest's parent runs another command line
    assert run["id"] == f"{socket.gethostname()}:{os.getpid()}:2026-12-04T20:00:00+00:00"
    child = subprocess.run(
        [sys.executable, "-c",
         "import json, os; from gpuprov.core import rollout; "
         "pid = os.fork()\n"
         "if pid == 0:\n print(json.dumps(rollout.controller_run('t'))); os._exit(0)\n"
         "os.waitpid(pid, 0); print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    forked, parent = child.stdout.split("\n")[:2]
    assert json.loads(forked)["pid"] == int(parent)


def _holder(pid: int, controller: str | None = None) -> dict:
    controller = controller or socket.gethostname()
    return {"run": {"id": f"{controller}:{pid}:t0", "controller": controller, "pid": pid}}


def test_a_host_held_by_a_live_run_blocks_and_one_left_by_a_dead_run_is_resumed():
    run = {"id": "me"}
    assert rollout.lock_blocker(None, run, False) == ""
    live = rollout.lock_blocker(_holder(os.getpid()), run, False)
    assert live.endswith("is still running on it; wait for it to end")
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert rollout.lock_blocker(_holder(ended.pid), run, False) == ""
    assert rollout.expected_holder(_holder(ended.pid)) == f"{socket.gethostname()}:{ended.pid}:t0"


def test_a_host_held_from_another_controller_needs_break_lock():
    run = {"id": "me"}
    said = rollout.lock_blocker(_holder(1, "laptop-7"), run, False)
    assert "from laptop-7 (pid 1)" in said
    assert "-e rollout_break_lock=true" in said
    assert rollout.lock_blocker(_holder(1, "laptop-7"), run, True) == ""
    assert rollout.lock_blocker(_holder(1, "laptop-7"), {"id": "laptop-7:1:t0"}, False) == ""


HISTORY = [
    {"outcome": "rolled_out", "image": "v2", "previous": {"gpuprov-alice-jupyter": "v1"}},
    {"outcome": "rolled_back", "image": "v2", "previous": {"gpuprov-alice-jupyter": "v2"}},
    {"outcome": "rolled_out", "image": "v3",
     "previous": {"gpuprov-alice-jupyter": "v2", "gpuprov-carol-ssh": "v2b"}},
]  # fmt: skip
RUNNING = {"gpuprov-alice-jupyter": "v3", "gpuprov-carol-ssh": "v3", "gpuprov-erin-ssh": "v3"}


def test_a_rollback_returns_each_workspace_to_its_image_before_the_last_rollout():
    assert rollout.rollback_images("gpu1", HISTORY, RUNNING) == {
        "gpuprov-alice-jupyter": "v2",
        "gpuprov-carol-ssh": "v2b",
        "gpuprov-erin-ssh": "v3",  # created by that rollout: nothing older to go back to
    }


def test_a_rollback_to_a_named_image_takes_one_from_the_history():
    assert set(rollout.rollback_images("gpu1", HISTORY, RUNNING, "v1").values()) == {"v1"}
    with pytest.raises(rollout_settings.RolloutError) as error:
        rollout.rollback_images("gpu1", HISTORY, RUNNING, "v0")
    assert "rollback_to: v0 is not in gpu1's history; the images on record are: v2, v3, v1" in str(
        error.value
    )


def test_a_rollback_without_history_says_there_is_nothing_to_go_back_to():
    with pytest.raises(rollout_settings.RolloutError, match="gpu1 has no rollout on record"):
        rollout.rollback_images("gpu1", HISTORY[1:2], RUNNING)


def test_the_previous_image_is_the_one_most_workspaces_ran():
    assert rollout.previous_image({"a": "v1", "b": "v2", "c": "v2"}) == "v2"
    assert rollout.previous_image({"a": "v2", "b": "v1"}) == "v1"
    assert rollout.previous_image({}) == ""


def test_workspace_images_come_from_gpuprov_labels_only():
    containers = [
        {"Names": ["/gpuprov-alice-jupyter"],
         "Labels": {"org.gpuprov.user": "alice", "org.gpuprov.image": "v2"}},
        {"Names": ["/postgres"], "Labels": {"org.gpuprov.image": "v9"}},
    ]  # fmt: skip
    assert rollout.workspace_images(containers) == {"gpuprov-alice-jupyter": "v2"}


def test_only_running_workspaces_that_would_move_are_probed_for_work():
    running = {"gpuprov-alice-jupyter": OLD}
    assert rollout.moving([ALICE, CAROL], running, PINNED, {}, PIN) == [ALICE, CAROL]
    # carol's workspace has no container yet: nothing of hers can be lost
    assert rollout.restarting([ALICE, CAROL], running, PINNED, {}, PIN) == [ALICE]


def test_a_busy_workspace_is_held_on_its_image_and_the_host_may_then_not_move():
    running = {"gpuprov-alice-jupyter": OLD, "gpuprov-carol-ssh": PINNED}
    held = rollout.held({"gpuprov-alice-jupyter": ["SSH session open (pts/0)"]}, running)
    assert held == {"gpuprov-alice-jupyter": OLD}
    assert not rollout.host_moves([ALICE, CAROL], running, PINNED, held, None, PIN)


def test_the_summary_says_who_moved_and_who_is_pending_and_why():
    assert rollout.activity_summary("h100", [CAROL], {}) == "h100: moved gpuprov-carol-ssh"
    said = rollout.activity_summary(
        "h100", [], {"gpuprov-alice-jupyter": ["python3 kernel busy", "terminal 1 active"]}
    )
    assert said.startswith(
        "h100: moved nothing; PENDING, still on their image: gpuprov-alice-jupyter "
        "(python3 kernel busy, terminal 1 active). The next run"
    )


def test_the_webhook_hears_who_moves_and_who_is_pending():
    activity = {
        "busy": {"gpuprov-alice-ssh": ["SSH session open (pts/0)"], "gpuprov-bob-ssh": ["x"]},
        "pending": {"gpuprov-alice-ssh": ["SSH session open (pts/0)"]},
    }
    body = rollout.webhook_body("h100", "team@sha256:ab", "skip", activity)
    assert body["workspaces"] == [
        {
            "name": "gpuprov-alice-ssh",
            "reasons": ["SSH session open (pts/0)"],
            "outcome": "pending",
        },
        {"name": "gpuprov-bob-ssh", "reasons": ["x"], "outcome": "moves"},
    ]
    assert body["text"] == (
        "gpuprov rollout to team@sha256:ab on h100 (policy skip): gpuprov-alice-ssh pending "
        "(SSH session open (pts/0)); gpuprov-bob-ssh moves (x)"
    )


def test_the_canary_is_the_first_batch_of_several():
    hosts = ["a", "b", "c", "d"]
    assert rollout.is_canary(["a"], hosts, [1, "100%"])
    assert not rollout.is_canary(["b", "c", "d"], hosts, [1, "100%"])
    assert not rollout.is_canary(hosts, hosts, ["100%"])  # one batch: nothing to promote to


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("gpuprov_rollout_wait", "60", None),  # -e gpuprov_rollout_wait=60
        ("gpuprov_rollout_wait", 60, None),
        ("gpuprov_rollout_wait", "an hour", "'an hour' is not valid: a whole number such as 60"),
        ("gpuprov_rollout_canary_pause", -1, "-1 is below the minimum 0"),
        ("gpuprov_rollout_busy", "later", "'later' is not one of 'wait', 'skip', 'force'"),
        ("gpuprov_rollout_max_failed", "10%", None),
        ("gpuprov_rollout_batches", "1,25%", None),
        ("gpuprov_rollout_batches", [1, "x"], "'x' is not a batch size"),
    ],
)
def test_the_schema_reads_rollout_settings_as_the_rollout_does(name, value, problem):
    found = [p.message for p in variables.ALL_VARIABLES[name].validate(value, name)]
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(problem), found
