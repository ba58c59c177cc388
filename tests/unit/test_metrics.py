"""gpuprov.prom's text, read back by Prometheus's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpuprov.core import metrics

REPORT = {
    "checks": [
        {"name": "driver", "status": "ok", "reason": "570.124.06"},
        {"name": "container toolkit", "status": "fail", "reason": 'old "1.16"'},
        {"name": "cuda workload", "status": "n/a", "reason": "no GPU"},
    ]
}
PLAN = [
    {"user": "bob", "kind": "ssh", "port": 20005},
    {"user": "alice", "kind": "jupyter", "port": 20002},
]
PINNED = "registry.test:5000/team/pytorch@sha256:" + "a" * 64


def parsed(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_verify_gives_each_gate_its_status():
    text = metrics.section_text("verify", metrics.verify_families(REPORT))
    found = parsed(text)
    status = {
        (labels["check"], labels["status"]): value
        for labels, value in found["gpuprov_verify_check_status"]
    }
    assert status[("driver", "ok")] == 1 and status[("driver", "fail")] == 0
    assert status[("container toolkit", "fail")] == 1
    assert status[("cuda workload", "n/a")] == 1
    assert len(status) == 3 * len(metrics.VERIFY_STATUSES)
    assert found["gpuprov_verify_failed_checks"] == [({}, 1.0)]


def test_one_info_series_per_workspace_and_whether_it_runs_the_pin():
    found = parsed(metrics.section_text("w", metrics.workspace_families(PLAN, PINNED, PINNED)))
    info = found["gpuprov_workspace_info"]
    assert [labels["user"] for labels, _ in info] == ["alice", "bob"]
    assert info[0] == (
        {
            "user": "alice",
            "kind": "jupyter",
            "port": "20002",
            "image": PINNED,
        },
        1.0,
    )
    assert [value for _, value in found["gpuprov_workspace_on_pin"]] == [1.0, 1.0]
    older = parsed(metrics.section_text("w", metrics.workspace_families(PLAN, "sha256:b", PINNED)))
    assert [value for _, value in older["gpuprov_workspace_on_pin"]] == [0.0, 0.0]
    # A pin the run builds has no reference to compare with: not on the pin.
    built = parsed(metrics.section_text("w", metrics.workspace_families(PLAN, "sha256:b", "")))
    assert [value for _, value in built["gpuprov_workspace_on_pin"]] == [0.0, 0.0]


def test_the_last_rollout_outcome_is_one_hot():
    found = parsed(metrics.section_text("r", metrics.rollout_families("rolled_back", "old@x")))
    outcome = {labels["outcome"]: value for labels, value in found["gpuprov_rollout_last_outcome"]}
    assert outcome == {"rolled_out": 0, "rolled_back": 1, "rollback_failed": 0, "stopped": 0}
    with pytest.raises(metrics.MetricsError, match="unknown rollout outcome 'oops'"):
        metrics.rollout_families("oops", "x")


def test_a_stopped_rollout_says_where_the_host_is():
    assert metrics.rollout_outcome("old@sha256:a") == "rolled_back"
    assert metrics.rollout_outcome("old@sha256:a", "Start the workspaces: timeout") == (
        "rollback_failed"
    )
    assert metrics.rollout_outcome("") == "stopped"


def test_a_section_is_replaced_and_the_others_kept():
    first = metrics.merge("", "workspaces", metrics.workspace_families(PLAN, PINNED, PINNED))
    both = metrics.merge(first, "verify", metrics.verify_families(REPORT))
    again = metrics.merge(both, "workspaces", metrics.workspace_families(PLAN[:1], PINNED, PINNED))
    found = parsed(again)
    assert set(found) == {
        "gpuprov_verify_check_status",
        "gpuprov_verify_failed_checks",
        "gpuprov_workspace_info",
        "gpuprov_workspace_on_pin",
    }
    assert [labels["user"] for labels, _ in found["gpuprov_workspace_info"]] == ["bob"]
    # Same input, same bytes: a rerun changes nothing.
    assert metrics.merge(again, "verify", metrics.verify_families(REPORT)) == again
    assert again.index("# gpuprov section: verify") < again.index("# gpuprov section: workspaces")
