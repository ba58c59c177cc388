"""Where reports go on the controller: gpuprov_report_dir, relative to the folder of site.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.playbooks import ansible_playbook

from gpuprov.core import reports, variables

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("setting", "playbook_dir", "kind", "expected"),
    [
        ("reports", "/clone", "verify", "/clone/reports/verify"),
        # playbooks/verify.yml run alone writes where site.yml's run does.
        ("reports", "/clone/playbooks", "verify", "/clone/reports/verify"),
        ("reports", "/clone/playbooks/", "connect", "/clone/reports/connect"),
        ("out/team", "/clone", "connect", "/clone/out/team/connect"),
        ("/runner/artifacts/42/reports", "/clone/playbooks", "verify",
         "/runner/artifacts/42/reports/verify"),
        ("/srv/reports/", "/clone", "", "/srv/reports"),
        # Only a folder named playbooks is the project's: another folder is the project.
        ("reports", "/work/plays", "verify", "/work/plays/reports/verify"),
    ],
)  # fmt: skip
def test_report_dir(setting, playbook_dir, kind, expected):
    assert reports.report_dir(setting, playbook_dir, kind) == expected
    # Outside ansible-runner the job's artifacts folder is empty: the same place.
    assert reports.report_dir(setting, playbook_dir, kind, "") == expected


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("reports", "/runner/artifacts/7/reports/verify"),
        ("out/../team", "/runner/artifacts/7/team/verify"),
        # An absolute folder is what the job template asked for, runner or not.
        ("/srv/reports", "/srv/reports/verify"),
    ],
)
def test_under_the_runner_a_relative_folder_is_in_the_job_artifacts(setting, expected):
    assert reports.report_dir(setting, "/runner/project", "verify", "/runner/artifacts/7") == (
        expected
    )


def test_the_default_keeps_reports_in_the_clone():
    assert variables.DEFAULTS["gpuprov_report_dir"] == "reports"
    node = variables.TEAM_VARIABLES["gpuprov_report_dir"]
    assert list(node.validate("/srv/reports", "x")) == []
    assert [p.message for p in node.validate(" ", "x")]
    assert [p.message for p in node.validate("", "x")]


SHOW = """\
- name: Show where the roles write their reports
  hosts: localhost
  gather_facts: false
  vars_files:
    - {repo}/roles/host_verify/defaults/main.yml
    - {repo}/roles/workspaces/defaults/main.yml
  tasks:
    - name: Show the folders
      ansible.builtin.debug:
        msg:
          - "verify={{{{ host_verify_report_dir }}}}"
          - "connect={{{{ workspaces_connect_dir }}}}"
"""


def folders(project: Path, *args: str) -> dict[str, str]:
    """The role defaults' folders, as a playbook in project/playbooks resolves them."""
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks/show.yml").write_text(SHOW.format(repo=REPO))
    result = ansible_playbook(
        "-i", "localhost,", "-c", "local", "playbooks/show.yml", *args, cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [line.strip(" -") for line in result.stdout.splitlines() if "=/" in line]
    return dict(item.split("=", 1) for item in shown)


def test_the_roles_write_beside_site_yml_by_default(tmp_path):
    project = tmp_path / "project"
    assert folders(project) == {
        "verify": f"{project}/reports/verify",
        "connect": f"{project}/reports/connect",
    }


def test_the_roles_write_to_the_folder_given(tmp_path):
    shown = folders(tmp_path / "project", "-e", "gpuprov_report_dir=/runner/artifacts/7")
    assert shown == {
        "verify": "/runner/artifacts/7/verify",
        "connect": "/runner/artifacts/7/connect",
    }


def test_under_ansible_runner_the_roles_write_to_the_job_artifacts(tmp_path, monkeypatch):
    """ansible-runner sets AWX_ISOLATED_DATA_DIR to the job's artifacts folder (AWX's too)."""
    artifacts = tmp_path / "artifacts" / "job-7"
    monkeypatch.setenv("AWX_ISOLATED_DATA_DIR", str(artifacts))
    assert folders(tmp_path / "project") == {
        "verify": f"{artifacts}/reports/verify",
        "connect": f"{artifacts}/reports/connect",
    }
    shown = folders(tmp_path / "other", "-e", "gpuprov_report_dir=/srv/gpuprov-reports")
    assert shown == {
        "verify": "/srv/gpuprov-reports/verify",
        "connect": "/srv/gpuprov-reports/connect",
    }
