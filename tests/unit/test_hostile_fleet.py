"""Class 4 of hostile inventories: the fleet's structure."""

from __future__ import annotations

import pytest
from hostile import HOSTS, Case, assert_case

SECOND = "    gpu2:\n      ansible_host: {address}\n"
GROUPED = """\
all:
  children:
    gpu_servers:
      hosts:
        gpu1: {{ansible_host: 192.0.2.10, gpuprov_gpu: {{count: 2, model: H100}}}}
    {second}:
      hosts:
        gpu2: {{ansible_host: 192.0.2.11}}
"""
# A third host reached its own way: gpu2 is not the only one without the group's settings.
THIRD = "        ws3: {ansible_host: 192.0.2.12}\n"
BECOME = "ansible_user: admin\nansible_become: true\n"

CASES = {
    "two hosts at one address": Case(
        {"hosts.yml": HOSTS + SECOND.format(address="192.0.2.10")},
        ("hosts.yml", "host 'gpu2'", "ansible_host", "is also host 'gpu1'"),
    ),
    "a host whose name is its twin's address": Case(
        {"hosts.yml": "all:\n  hosts:\n    192.0.2.10: {}\n    gpu1: {ansible_host: 192.0.2.10}\n"},
        ("hosts.yml", "host 'gpu1'", "ansible_host", "is also host '192.0.2.10'"),
    ),
    "a host name that is a path": Case(
        {"hosts.yml": HOSTS + "    ../../x:\n      ansible_host: 192.0.2.11\n"},
        ("hosts.yml", "host '../../x'", "(host name)", "is not a plain name"),
    ),
    "host_vars for a host that is not there": Case(
        {"host_vars/gpu-1.yml": "gpuprov_gpu: {count: 8}\n"},
        ("host_vars/gpu-1.yml", "host 'gpu-1'", "(host_vars)", "reach nobody"),
    ),
    "a host_vars directory for a host that is not there": Case(
        {"host_vars/gpu3/gpu.yml": "gpuprov_gpu: {count: 8}\n"},
        ("host_vars/gpu3", "host 'gpu3'", "(host_vars)", "reach nobody"),
    ),
    "group_vars for a group that is not there": Case(
        {"group_vars/gpu_servers.yml": "gpuprov_docker_manage: true\n"},
        ("group_vars/gpu_servers.yml", "group 'gpu_servers'", "(group_vars)", "reach nobody"),
        warning=True,
    ),
    "a host under a misspelt group": Case(
        {"hosts.yml": GROUPED.format(second="gpu-servers"), "group_vars/gpu_servers.yml": BECOME},
        ("", "host 'gpu2'", "ansible_become", "(it is in 'gpu-servers')"),
        warning=True,
    ),
    "a host outside the group every other host is in": Case(
        {"hosts.yml": GROUPED.format(second="workstations"),
         "group_vars/gpu_servers.yml": BECOME},
        ("", "host 'gpu2'", "ansible_user", "while group 'gpu_servers' gives it"),
        warning=True,
    ),
    # What a team may write.
    "hosts of two groups reached two ways": Case(
        {"hosts.yml": GROUPED.format(second="workstations") + THIRD,
         "group_vars/gpu_servers.yml": BECOME}
    ),
    "a group's settings on every host": Case(
        {"hosts.yml": GROUPED.format(second="x").replace("\n    x:\n      hosts:\n", "\n"),
         "group_vars/gpu_servers.yml": BECOME}
    ),
    "two hosts on one address, other ports": Case(
        {"hosts.yml": HOSTS.replace("192.0.2.10", "192.0.2.10\n      ansible_port: 2201")
         + SECOND.format(address="192.0.2.10")}
    ),
    "host_vars for a host that is there": Case(
        {"host_vars/gpu1.yml": "gpuprov_docker_manage: true\n"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_fleet_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)


def test_the_fix_names_the_host_a_typo_meant(tmp_path, capsys):
    from hostile import findings

    case = CASES["host_vars for a host that is not there"]
    found = findings(case.write(tmp_path))
    assert any("'gpu1'?" in f.fix for f in found), "\n".join(map(str, found))


def test_a_connection_gap_names_the_inventory_and_the_groups_file(tmp_path):
    from hostile import findings

    case = CASES["a host under a misspelt group"]
    root = case.write(tmp_path)
    found = [f for f in findings(root) if f.key == "ansible_user"]
    assert [f.file for f in found] == [str(root)]
    assert "group_vars/gpu_servers.yml:1" in found[0].message
    assert "add 'gpu2' to group 'gpu_servers' (is 'gpu-servers' a typo?)" in found[0].fix
