"""gpuprov_metrics writes gpuprov.prom sections in place, atomically, changed only on change."""

from __future__ import annotations

from conftest import load
from prometheus_client.parser import text_string_to_metric_families

METRICS = load("gpuprov_metrics")
REPORT = {"checks": [{"name": "driver", "status": "ok", "reason": ""}]}
PLAN = [{"user": "alice", "kind": "ssh", "port": 20003}]


def names(path) -> set[str]:
    return {f.name for f in text_string_to_metric_families(path.read_text())}


def test_sections_accumulate_and_a_rerun_changes_nothing(tmp_path, run_module):
    folder = tmp_path / "textfile"
    verify = {"dir": str(folder), "section": "verify", "report": REPORT}
    first = run_module(METRICS, verify)
    assert first["changed"] is True
    prom = folder / "gpuprov.prom"
    assert first["path"] == str(prom)
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    workspaces = {"dir": str(folder), "section": "workspaces", "workspaces": PLAN,
                  "image": "img@sha256:a", "pinned": "img@sha256:a"}  # fmt: skip
    assert run_module(METRICS, workspaces)["changed"] is True
    rollout = {"dir": str(folder), "section": "rollout", "outcome": "rolled_out", "image": "i"}
    assert run_module(METRICS, rollout)["changed"] is True
    assert names(prom) == {
        "gpuprov_verify_check_status",
        "gpuprov_verify_failed_checks",
        "gpuprov_workspace_info",
        "gpuprov_workspace_on_pin",
        "gpuprov_rollout_last_outcome",
    }
    assert run_module(METRICS, verify)["changed"] is False
    # Nothing but the file: the temporary one was renamed over it.
    assert [p.name for p in folder.iterdir()] == ["gpuprov.prom"]


def test_check_mode_writes_nothing_and_shows_the_diff(tmp_path, run_module):
    args = {
        "dir": str(tmp_path),
        "section": "verify",
        "report": REPORT,
        "_ansible_check_mode": True,
    }
    result = run_module(METRICS, {**args, "_ansible_diff": True})
    assert result["changed"] is True
    assert "gpuprov_verify_check_status" in result["diff"]["after"]
    assert not (tmp_path / "gpuprov.prom").exists()
