"""Class 1 of hostile inventories: templates Ansible would run on the controller."""

from __future__ import annotations

import pytest
from hostile import HOSTS, Case, alice_with, assert_case, findings, users

PIPE = "{{ lookup('ansible.builtin.pipe', 'touch RAN') }}"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXJ9Xq8ycIUk5VvbGM9bb1NuYdAfnrUZmwLt9yZz2F1 alice@lab"


def gpu_model(value: str) -> dict[str, str]:
    return {"hosts.yml": HOSTS.replace("model: H100", f"model: {value}")}


def address(value: str) -> dict[str, str]:
    return {"hosts.yml": HOSTS.replace("192.0.2.10", value)}


MODEL = ("hosts.yml", "host 'gpu1'", "gpuprov_gpu.model")
HOST = ("hosts.yml", "host 'gpu1'", "ansible_host")
ALICE_KEY = ("users.yml", "user 'alice'", "gpuprov_users[0].ssh_keys[0]")
ALICE_VOLUME = ("users.yml", "user 'alice'", "gpuprov_users[0].volumes[0].source")
FILE_KEY = "{{ lookup('ansible.builtin.file', lookup('ansible.builtin.env', 'HOME') + '/k.pub') }}"

CASES = {
    "pipe in an SSH key": Case(
        users(alice_with(f'ssh_keys: ["{PIPE}"]')),
        (*ALICE_KEY, "'ansible.builtin.pipe' lookup"),
    ),
    "pipe in a volume source": Case(
        users(alice_with(f'volumes: [{{source: "/srv/{PIPE}", target: /data}}]')),
        (*ALICE_VOLUME, "run on the controller"),
    ),
    "pipe in a GPU model": Case(
        gpu_model(f'"{PIPE}"'),
        (*MODEL, "'ansible.builtin.pipe' lookup"),
    ),
    "pipe in a registry user name": Case(
        {"group_vars/all/registry.yml": f'gpuprov_registry: {{address: r, username: "{PIPE}"}}'},
        ("registry.yml", "group 'all'", "gpuprov_registry.username", "pipe"),
    ),
    "pipe in ansible_host": Case(
        address(f'"{PIPE}"'),
        (*HOST, "'ansible.builtin.pipe' lookup"),
    ),
    "query instead of lookup": Case(
        address("\"{{ query('pipe', 'id') | first }}\""),
        (*HOST, "'first'"),
    ),
    "a lookup hidden behind another variable": Case(
        address(f'"{{{{ target }}}}"\n      target: "{PIPE}"'),
        (*HOST, "through the variable 'target'"),
    ),
    "a statement": Case(
        gpu_model('"{% for x in [1] %}H100{% endfor %}"'),
        (*MODEL, "{% for %} statement"),
    ),
    "a comment": Case(
        gpu_model('"H100{# see ticket #}"'),
        (*MODEL, "comment"),
    ),
    "a method call": Case(
        gpu_model("\"{{ 'x'.__class__.__mro__ }}\""),
        (*MODEL, "a way out of Jinja"),
    ),
    "a dunder item": Case(
        gpu_model("\"{{ 'x'['__class__'] }}\""),
        (*MODEL, "a way out of Jinja"),
    ),
    "a lookup of a computed name": Case(
        address("\"{{ lookup('pi' ~ 'pe', 'id') }}\""),
        (*HOST, "computed"),
    ),
    "an unknown filter": Case(
        gpu_model("\"{{ 'H100' | regex_replace('a', 'b') }}\""),
        (*MODEL, "'regex_replace'"),
    ),
    "not valid Jinja": Case(
        gpu_model('"{{ H100"'),
        (*MODEL, "not even valid Jinja"),
    ),
    # What a team may write.
    "the file and env lookups for a key": Case(
        users(alice_with(f'ssh_keys: ["{FILE_KEY}"]'))
    ),
    "a variable, a constant and a pure filter": Case(
        gpu_model("\"{{ gpu_model | default('H100') | upper }}\"")
    ),
    "a magic variable": Case(
        address('192.0.2.10\n      ansible_python_interpreter: "{{ ansible_playbook_python }}"')
    ),
    "!unsafe keeps a literal": Case(
        gpu_model(f'!unsafe "{PIPE}"')
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_template_case(name, tmp_path, capsys):
    case = CASES[name]
    files = {k: v.replace("RAN", str(tmp_path / "ran")) for k, v in case.files.items()}
    assert_case(Case(files, case.expect), tmp_path / "inv", capsys)
    assert not (tmp_path / "ran").exists(), "the check itself must never run a template"


def test_a_key_read_by_the_file_lookup_is_still_a_key(tmp_path):
    (tmp_path / "k.pub").write_text(KEY + "\n")
    case = Case(users(alice_with(f"ssh_keys: [\"{{{{ lookup('file', '{tmp_path}/k.pub') }}}}\"]")))
    assert findings(case.write(tmp_path / "inv")) == []
