"""Class 5 of hostile inventories: YAML that loses data or never ends."""

from __future__ import annotations

import pytest
from hostile import ALICE, Case, assert_case


def bomb(depth: int) -> str:
    """A "billion laughs": each alias nests nine of the one before."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, depth)]
    return "\n".join(lines) + f"\ngpuprov_users: *l{depth - 1}\n"


USERS = "group_vars/all/users.yml"

CASES = {
    "a second gpuprov_users in one file": Case(
        {USERS: "gpuprov_users:\n" + ALICE + "gpuprov_users: []\n"},
        ("users.yml", "inventory", "(file)", "duplicate mapping key 'gpuprov_users'"),
    ),
    "a duplicate key inside a user": Case(
        {USERS: "gpuprov_users:\n" + ALICE + "    uid: 2002\n"},
        ("users.yml", "inventory", "(file)", "duplicate mapping key 'uid'"),
    ),
    "an emptied users file": Case(
        {USERS: "# users moved to the new repository\n"},
        ("users.yml", "inventory", "(file)", "sets nothing"),
        warning=True,
    ),
    "a binary file": Case(
        {USERS: b"\x00\x01\xff\xfegpuprov_users: []\n"},
        ("users.yml", "inventory", "(file)", "is not UTF-8 text"),
    ),
    "a Latin-1 file": Case(
        {USERS: "gpuprov_users:\n  - name: jos\xe9\n".encode("latin-1")},
        ("users.yml", "inventory", "(file)", "is not UTF-8 text"),
    ),
    "an alias bomb": Case(
        {USERS: bomb(9)}, ("users.yml", "inventory", "(file)", "expands to more than")
    ),
    # What a team may write.
    "aliases that do not nest": Case(
        {USERS: "common: &vol [{source: /srv/datasets, target: /data}]\ngpuprov_users:\n"
         + ALICE + "    volumes: *vol\n"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_yaml_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
