"""site.yml checks the inventory on the controller before any host is touched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.playbooks import ansible_playbook

# Seconds each (ansible-playbook runs site.yml):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run_site(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_play(inventory, "site.yml", *args)


def run_play(inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    return ansible_playbook("-i", str(inventory), playbook, *args)


def test_a_bad_inventory_stops_site_yml_in_the_first_play():
    bad = REPO / "tests/unit/bad_inventories/gpu-given-twice"
    result = run_site(bad)
    assert result.returncode != 0
    out = result.stdout
    assert "GPU 1 on host 'gpu1' is already given to user 'alice'" in out
    assert "gpu-given-twice/group_vars/all/users.yml" in out
    # The check ran on the controller; the hosts (TEST-NET addresses that answer
    # nobody) were never contacted.
    assert "fatal: [gpu1 -> localhost]: FAILED!" in out
    assert "unreachable=1" not in out
    assert "Make sure Docker answers" not in out


def test_a_limited_run_is_checked_too():
    """`site.yml -l HOST` (and onboard.yml, which needs -l) checks the whole inventory."""
    bad = REPO / "tests/unit/bad_inventories/gpu-given-twice"
    result = run_site(bad, "-l", "gpu1")
    assert result.returncode != 0
    assert "GPU 1 on host 'gpu1' is already given to user 'alice'" in result.stdout
    assert "Make sure Docker answers" not in result.stdout


def test_check_mode_also_stops_on_a_bad_inventory():
    result = run_site(REPO / "tests/unit/bad_inventories/unknown-host", "--check")
    assert result.returncode != 0
    assert "host 'gpu9' is not in the inventory" in result.stdout


def test_the_check_validates_the_plays_own_variables_extra_vars_too():
    """What the roles will read is what is checked: -e outranks every inventory file."""
    example = REPO / "inventories/example"
    bad = run_play(example, "playbooks/check.yml", "-e", "gpuprov_bind_address=not-an-ip")
    assert bad.returncode != 0
    assert "<CLI option '-e'>: host 'gpu-h100': gpuprov_bind_address: " in bad.stdout
    assert "is not an IP address" in bad.stdout


def test_rollout_batches_come_from_the_inventory_or_the_command_line():
    """key=value on the command line is a comma list; the check reads both with the rollout's
    own parser, and names the bad batch."""
    example = REPO / "inventories/example"
    given = run_play(example, "playbooks/check.yml", "-e", "gpuprov_rollout_batches=1,25%,100%")
    assert given.returncode == 0, given.stdout
    bad = run_play(example, "playbooks/check.yml", "-e", "gpuprov_rollout_batches=1,quarter")
    assert bad.returncode != 0
    said = " ".join(bad.stdout.split())
    assert "gpuprov_rollout_batches: 'quarter' is not a batch size" in said, said[-2000:]
    in_file = run_play(REPO / "tests/unit/bad_inventories/rollout-batch-of-zero",
                       "playbooks/check.yml")  # fmt: skip
    assert in_file.returncode != 0
    assert "gpuprov_rollout_batches[1]" in in_file.stdout


def test_a_template_that_runs_a_command_stops_site_yml_before_it_runs(tmp_path):
    """The first play reads the play's raw variables: a pipe lookup in a user's volume is
    refused there, and the command it names never runs on the controller."""
    inventory = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/example", inventory)
    users = inventory / "group_vars/all/users.yml"
    ran = tmp_path / "ran"
    text = users.read_text().replace(
        "source: /data/datasets", f"source: \"/data/{{{{ lookup('pipe', 'touch {ran}') }}}}\"", 1
    )
    assert text != users.read_text()
    users.write_text(text)
    result = run_site(inventory)
    assert result.returncode != 0
    assert "is a template that Ansible would run on the controller" in result.stdout
    assert "fatal: [" in result.stdout and "-> localhost]: FAILED!" in result.stdout
    assert not ran.exists(), result.stdout


def test_the_first_play_prints_warnings_and_gpuprov_strict_makes_them_errors(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/example", inventory)
    (inventory / "group_vars/gpu_sevrers.yml").write_text("gpuprov_docker_manage: true\n")
    warned = run_play(inventory, "playbooks/check.yml")
    assert warned.returncode == 0, warned.stdout
    said = warned.stdout + warned.stderr
    assert "[WARNING]" in said and "group 'gpu_sevrers'" in said, said
    strict = run_play(inventory, "playbooks/check.yml", "-e", '{"gpuprov_strict": true}')
    assert strict.returncode != 0
    said = strict.stdout + strict.stderr
    assert "ERROR" in said and "group 'gpu_sevrers'" in said and "no host was touched" in said


def test_a_boolean_given_as_text_on_the_command_line_says_how_to_write_it(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/example", inventory)
    result = run_play(inventory, "playbooks/check.yml", "-e", "gpuprov_strict=true")
    assert result.returncode != 0
    assert """write -e '{"gpuprov_strict": true}'""" in result.stdout + result.stderr


def test_the_first_play_warns_of_a_host_outside_the_group_that_says_how_to_reach_it(tmp_path):
    """The play's own groups reach the rule: a host under a misspelt group gets no
    ansible_user or become from gpu_servers' vars."""
    inventory = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/example", inventory)
    hosts = inventory / "hosts.yml"
    hosts.write_text(
        hosts.read_text().replace(
            "  children:\n",
            "  children:\n    gpu-servers:\n      hosts:\n"
            "        gpu-new: {ansible_host: 10.20.0.31}\n",
            1,
        )
    )
    warned = run_play(inventory, "playbooks/check.yml")
    said = warned.stdout + warned.stderr
    assert warned.returncode == 0, said
    assert "[WARNING]" in said and "host 'gpu-new': ansible_become" in said, said
    assert "(is 'gpu-servers' a typo?)" in said, said
