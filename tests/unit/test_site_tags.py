"""site.yml's tags run one step and the inventory check, nothing else.

`ansible-playbook --list-tasks` resolves the tags the way a run does and
contacts no host, so the lists below are what a tagged run would execute.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.playbooks import ansible_playbook

# Seconds each (ansible-playbook lists the tasks):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLAY = re.compile(r"^  play #\d+ \([^)]*\): (?P<name>.+?)\tTAGS: ")
TASK = re.compile(r"^      (?P<name>.+?)\tTAGS: ")
# Ansible tags every role's argument check `always`: it runs in every play, on the
# controller only (no host is contacted), and is no step of its own.
ARGUMENT_CHECK = "Validating arguments against arg spec"

CHECK = ("Check the inventory before touching any host", ["Validate the inventory files"])
PREPARE = "Make sure Docker answers on every host"
DRIVERS = "Install the NVIDIA driver and Container Toolkit where the inventory asks for it"
VERIFY = "Verify the NVIDIA driver, GPUs, Container Toolkit and Docker GPU runtime"
IMAGE = "Put the pinned team image on every host"
WORKSPACES = "Start every user's workspaces"
SUMMARY = "Tell every user how to connect to their workspaces"


def listed(playbook: str, *args: str) -> dict[str, list[str]]:
    """Each play of the listing with the tasks it would run, argument checks left out."""
    result = ansible_playbook("-i", "inventories/example", playbook, "--list-tasks", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    plays: dict[str, list[str]] = {}
    tasks: list[str] = []
    for line in result.stdout.splitlines():
        if play := PLAY.match(line):
            tasks = plays.setdefault(play["name"], [])
        elif (task := TASK.match(line)) and ARGUMENT_CHECK not in task["name"]:
            tasks.append(task["name"])
    return plays


def stepped(plays: dict[str, list[str]]) -> dict[str, list[str]]:
    return {play: tasks for play, tasks in plays.items() if tasks}


def test_without_tags_every_step_runs():
    plays = stepped(listed("site.yml"))
    assert list(plays) == [CHECK[0], PREPARE, DRIVERS, VERIFY, IMAGE, WORKSPACES, SUMMARY]


@pytest.mark.parametrize(
    ("tag", "step", "first_task"),
    [
        ("prepare", PREPARE, "docker_engine : Ask the Docker engine whether it answers"),
        ("verify", VERIFY, "host_verify : Gather the NVIDIA driver, GPU, kernel and toolkit facts"),
        ("image", IMAGE, "team_image : Record how the image reaches this host"),
        ("workspaces", WORKSPACES, "workspaces : Require the image the workspaces run"),
        ("summary", SUMMARY, "Write and show each user's connection note"),
    ],
)
def test_a_tag_runs_the_check_and_its_step_only(tag, step, first_task):
    plays = stepped(listed("site.yml", "--tags", tag))
    expected = [CHECK[0], step] if tag != "prepare" else [CHECK[0], PREPARE, DRIVERS]
    assert list(plays) == expected
    assert plays[CHECK[0]] == CHECK[1]
    assert plays[step][0] == first_task


def test_tags_combine():
    plays = stepped(listed("site.yml", "--tags", "image,workspaces"))
    assert list(plays) == [CHECK[0], IMAGE, WORKSPACES]


def test_a_tagged_onboard_still_requires_the_new_hosts():
    plays = stepped(listed("playbooks/onboard.yml", "--tags", "workspaces"))
    assert plays["Refuse to onboard without naming the new hosts"] == [
        "Require --limit so that no other host is touched"
    ]
    assert list(plays)[1:] == [CHECK[0], WORKSPACES]


SHOW_IMAGE = """\
- name: Show the image the workspaces would run without the image play
  hosts: localhost
  gather_facts: false
  vars_files:
    - {repo}/roles/workspaces/defaults/main.yml
  vars:
    gpuprov_image:
      reference: registry.test:5000/team/pytorch
      digest: "sha256:{digest}"
      id: "sha256:{image_id}"
  tasks:
    - name: Show it
      ansible.builtin.debug:
        msg: "image={{{{ workspaces_image }}}}"
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "registry.test:5000/team/pytorch@sha256:" + "a" * 64),
        # Hosts fed by an archive hold the image by ID only.
        (["-e", "team_image_transfer=archive"], "sha256:" + "b" * 64),
        # The team_image role's handoff wins when it ran.
        (["-e", "gpuprov_team_image_run=sha256:" + "c" * 64], "sha256:" + "c" * 64),
    ],
)
def test_tagged_workspaces_run_the_image_the_image_play_left(tmp_path, extra, expected):
    play = tmp_path / "show.yml"
    play.write_text(SHOW_IMAGE.format(repo=REPO, digest="a" * 64, image_id="b" * 64))
    result = ansible_playbook("-i", "localhost,", "-c", "local", str(play), *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"msg: image={expected}" in result.stdout
