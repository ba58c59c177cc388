"""Class 6 of hostile inventories: limits and ranges that are not what they say."""

from __future__ import annotations

import pytest
from hostile import HOSTS, Case, alice_with, assert_case, users

from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import rules

LIMITS = "gpuprov_users[0].limits"


def limits(text: str, key: str | None = None, words: str = "") -> Case:
    files = users(alice_with(f"limits: {{{text}}}"))
    if key is None:
        return Case(files)
    return Case(files, ("users.yml", "user 'alice'", f"{LIMITS}.{key}", words))


def port_range(first: int, last: int, words: str) -> Case:
    line = f"      gpuprov_port_range: {{first: {first}, last: {last}}}\n"
    return Case(
        {"hosts.yml": HOSTS + line}, ("hosts.yml", "host 'gpu1'", "gpuprov_port_range", words)
    )


CASES = {
    "cpus NaN": limits("cpus: .nan", "cpus", "not a finite number"),
    "cpus infinite": limits("cpus: .inf", "cpus", "not a finite number"),
    "cpus more than any host": limits("cpus: 10000", "cpus", "above the maximum 1024"),
    "cpus zero": limits("cpus: 0", "cpus", "must be greater than 0"),
    "memory zero, Docker's unlimited": limits(
        'memory: "0"', "memory", "Docker reads 0 as no limit"
    ),
    "memory 0g": limits("memory: 0g", "memory", "a size above zero"),
    "a pids limit of 10^15": limits("pids: 1000000000000000", "pids", "above the maximum 4194304"),
    "a pids limit that starves the shell": limits("pids: 8", "pids", "below the minimum 64"),
    "shm above memory": limits("memory: 1g, shm_size: 8g", "shm_size", "above the memory limit 1g"),
    "a port range of one port": port_range(20000, 20000, "holds 1 port(s); a user needs 2"),
    "a reversed port range": port_range(20010, 20000, "first 20010 is above last 20000"),
    # What a team may write.
    "limits that fit": limits("memory: 64g, shm_size: 16g, cpus: 8.5, pids: 4096"),
    "a two-port range": Case(
        {"hosts.yml": HOSTS + "      gpuprov_port_range: {first: 20000, last: 20001}\n"}
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_number_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)


def limits_of(tmp_path, host_line: str, user_limits: str) -> dict:
    files = users(alice_with(user_limits)) if user_limits else {}
    case = Case({**files, "hosts.yml": HOSTS + host_line})
    found = AnsibleInventory(Sources(inventory=[str(case.write(tmp_path))])).inventory()
    (workspace,) = rules.fleet(found).workspaces
    return workspace.limits


def test_every_workspace_gets_a_pids_limit_unless_lifted(tmp_path):
    assert limits_of(tmp_path / "a", "", "") == {"pids": 4096}
    assert limits_of(tmp_path / "b", "", "limits: {pids: 512}") == {"pids": 512}
    assert limits_of(tmp_path / "c", "", "limits: {pids: unlimited}") == {}


def test_a_hosts_limits_apply_under_the_users_own(tmp_path):
    host = "      gpuprov_workspace_limits: {memory: 64g, cpus: 16}\n"
    assert limits_of(tmp_path / "a", host, "") == {"memory": "64g", "cpus": 16}
    got = limits_of(tmp_path / "b", host, "limits: {memory: unlimited, cpus: 4}")
    assert got == {"cpus": 4}
