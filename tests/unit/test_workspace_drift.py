"""`gpuprov audit --workspaces` and the drift column of `gpuprov status`, end to end on
this machine: an inventory read by Ansible, the host reached the way status reaches a
local host, the probe's shell, and the inspection run for real by the team image's
Python in each user's home. Docker is the one stand-in: a CLI whose containers are
folders (the test bed's tests/integration run the real engine)."""

from __future__ import annotations

import json

import pytest
from support.drift import team_image, user_home

from gpuprov import cli
from gpuprov.core import drift, workspace_drift

# Seconds each (the inspection runs for real through gpuprov status's transport):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

FAKE_DOCKER = r"""#!/bin/sh
C="$(dirname "$0")/containers"
case "$1" in
version) echo 28.2.2 ;;
ps) case "$*" in
    *-q*) ls "$C" ;;
    *Names*) for id in $(ls "$C"); do
        echo "$(cat "$C/$id/label") $(cat "$C/$id/name") Up 2 hours"; done ;;
    *) for id in $(ls "$C"); do echo reg/team@sha256:aa; done ;;
    esac ;;
inspect) echo "/$(cat "$C/$4/name") $(cat "$C/$4/user") $(cat "$C/$4/label")" ;;
exec) [ "$2 $3" = "-i -u" ] && [ "$4" = "$(cat "$C/$5/user")" ] && [ "$6 $7" = "python3 -" ] \
        || { echo "fake docker: not the exec gpuprov runs: $*" >&2; exit 2; }
      cd "$(cat "$C/$5/home")" && HOME="$PWD" exec "$(cat "$C/$5/python")" - ;;
*) echo "fake docker: $1 is not faked" >&2; exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return team_image(tmp_path_factory.mktemp("fleet-drift"))


@pytest.fixture
def host(image, tmp_path, monkeypatch):
    """This machine as an inventory's only host, with a Docker whose workspaces are
    ada's (a module named like a team package in her home), bob's (clean), and one
    that runs as root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("GPUPROV_IMAGE_DIR", image["env"]["GPUPROV_IMAGE_DIR"])
    ada = user_home(image, tmp_path / "ada")
    (ada / "teampkg.py").write_text("VERSION = 'mine'\n")
    bob = user_home(image, tmp_path / "bob")
    for cid, user, uid, home in [("c1", "ada", "1000:1000", ada), ("c2", "bob", "1001:1001", bob),
                                 ("c3", "eve", "0:0", bob)]:  # fmt: skip
        folder = bin_dir / "containers" / cid
        folder.mkdir(parents=True)
        for name, value in [("name", f"gpuprov-{user}-jupyter"), ("user", uid), ("label", user),
                            ("home", str(home)), ("python", image["python"])]:  # fmt: skip
            (folder / name).write_text(value)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        "      gpuprov_gpu: {required: false}\n"
    )
    return {"inventory": str(tmp_path / "hosts.yml"), "containers": bin_dir / "containers"}


def test_the_audit_finds_drift_and_says_unknown_for_a_workspace_it_cannot_inspect(host, capsys):
    code = cli.main(["audit", "--workspaces", "-i", host["inventory"], "--json"])
    rows = {r["user"]: r for r in json.loads(capsys.readouterr().out)["workspaces"]}
    assert code == workspace_drift.EXIT_UNKNOWN
    assert rows["ada"]["state"] == "drift" and rows["ada"]["host"] == "here"
    (found,) = rows["ada"]["findings"]
    assert (found["kind"], found["package"]) == ("shadowed", "teampkg")
    assert found["where"].endswith("/ada/teampkg.py")
    assert rows["bob"]["state"] == "ok" and rows["bob"]["findings"] == []
    assert rows["eve"]["state"] == "unknown"
    assert "runs as root" in rows["eve"]["error"]


def test_drift_alone_exits_1_and_a_clean_fleet_0_with_the_table(host, capsys):
    (host["containers"] / "c3" / "user").write_text("1002:1002")  # eve as herself
    assert cli.main(["audit", "--workspaces", "-i", host["inventory"]]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["host", "user", "workspace", "findings"]
    assert table[1].split() == ["here", "ada", "gpuprov-ada-jupyter", "1", "(shadowed)"]
    assert table[2].startswith("  ! shadowed teampkg: import teampkg loads ")
    assert table[4].startswith("      fix: rename or move ")
    assert [line.split()[1] for line in table[5:]] == ["bob", "eve"]
    for cid in ("c1", "c3"):
        for file in (host["containers"] / cid).iterdir():
            file.unlink()
        (host["containers"] / cid).rmdir()
    assert cli.main(["audit", "--workspaces", "-i", host["inventory"]]) == 0


def test_status_shows_the_drift_column(host, capsys):
    code = cli.main(["status", "-i", host["inventory"], "--json"])
    (row,) = json.loads(capsys.readouterr().out)["hosts"]
    assert row["drift"] == "1 drift, 1 unknown"
    assert {d["user"]: d["state"] for d in row["workspace_drift"]} == {
        "ada": "drift", "bob": "ok", "eve": "unknown",
    }  # fmt: skip
    assert code == 0, "drift is the audit's verdict; status reports it"
    cli.main(["status", "-i", host["inventory"]])
    header, line = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[-1] == "drift" and line.endswith("1 drift, 1 unknown")


def test_an_image_or_workspaces_not_both(capsys):
    assert cli.main(["audit", "--workspaces", "team@sha256:1"]) == 2
    assert cli.main(["audit"]) == 2
    assert "give an IMAGE or --workspaces" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "rc", "error"),
    [
        ("", 124, "timed out"),
        ('OCI runtime exec failed: exec: "python3": executable file not found', 126,
         'not inspected: OCI runtime exec failed: exec: "python3"'),
        ("Traceback (most recent call last):\n  ...\nKeyError: 'x'", 1, "KeyError: 'x'"),
        ('{"home": "/"}', 0, "not inspected: {"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_a_report_is_unknown(output, rc, error):
    found = workspace_drift.read("gpuprov-ada-ssh", "ada", output, rc)
    assert found.state == "unknown" and error in found.error


def test_a_listed_workspace_that_did_not_answer_is_unknown():
    ok = workspace_drift.read(
        "w1", "ada", json.dumps(drift.Report("/home/ada", "py3.11").to_dict()), 0
    )
    assert ok.state == "ok"
    found = workspace_drift.for_workspaces([("ada", "w1"), ("bob", "w2")], {"w1": ok})
    assert [(d.workspace, d.state) for d in found] == [("w1", "ok"), ("w2", "unknown")]
    assert workspace_drift.summary(found, docker_up=True) == "1 unknown"
    assert workspace_drift.summary((), docker_up=False) == "unknown"
    assert workspace_drift.summary((), docker_up=True) == "-"
    rows = workspace_drift.host_rows("gpu-b", None, "connection refused on gpu-b:22")
    assert workspace_drift.exit_code(rows) == 2
    assert "? connection refused on gpu-b:22" in workspace_drift.render(rows)


def test_the_rollout_preflight_says_each_workspaces_drift_and_what_it_could_not_read():
    shadowed = drift.Finding("shadowed", "numpy", "/home/alice/x", "1.26 over 2.1", "remove it")
    report = drift.Report("/home/alice", "py3.11-torch2.13.0-cpu", (shadowed,))
    clean = drift.Report("/home/bob", "py3.11-torch2.13.0-cpu")
    answers = [
        {"item": "gpuprov-alice-ssh", "rc": 0, "stdout": json.dumps(report.to_dict())},
        {"item": "gpuprov-bob-ssh", "rc": 0, "stdout": json.dumps(clean.to_dict())},
        {"item": "gpuprov-carol-jupyter", "rc": 126, "msg": "OCI runtime exec failed"},
    ]
    assert workspace_drift.preflight_lines("h100", answers) == [
        "h100 gpuprov-alice-ssh: drift: shadowed numpy (/home/alice/x): remove it",
        "h100 gpuprov-bob-ssh: ok",
        "h100 gpuprov-carol-jupyter: unknown: not inspected: OCI runtime exec failed",
    ]
    assert workspace_drift.preflight_lines("h100", []) == ["h100: no workspace runs"]
