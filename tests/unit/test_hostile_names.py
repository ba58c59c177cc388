"""Classes 8 to 10 of hostile inventories: names and ids, secrets, IPv6."""

from __future__ import annotations

import pytest
from hostile import ALICE, HOSTS, Case, alice_with, assert_case, users

BOB = ALICE.replace("alice", "bob").replace("2001", "2002")
ALICE_KEY = "gpuprov_users[0]"


def named(name: str, words: str) -> Case:
    return Case(
        users(ALICE.replace("alice", name)),
        ("users.yml", f"user '{name}'", f"{ALICE_KEY}.name", words),
    )


def alice(extra: str, key: str, words: str, warning: bool = False, *more: str) -> Case:
    return Case(
        users(alice_with(extra), *more),
        ("users.yml", "user 'alice'", f"{ALICE_KEY}.{key}", words),
        warning=warning,
    )


CASES = {
    "root": named("root", "is a system account"),
    "nobody": named("nobody", "is a system account"),
    "www-data": named("www-data", "is a system account"),
    "the ubuntu image's user": named("ubuntu", "an image's default user"),
    "jupyter's jovyan": named("jovyan", "an image's default user"),
    "uid 1000": Case(
        users(ALICE.replace("2001", "1000")),
        ("users.yml", "user 'alice'", f"{ALICE_KEY}.uid", "the default user of many images"),
        warning=True,
    ),
    "a gid that is another user's uid": alice("gid: 2002", "gid", "is user 'bob's uid", True, BOB),
    "a plain-text Jupyter token": alice(
        "jupyter_token: " + "a" * 48, "jupyter_token", "plain text", True
    ),
    "a Jupyter token under 32 characters": alice(
        "jupyter_token: abc123", "jupyter_token", "a token under 32 can be guessed"
    ),
    "a plain-text registry password": Case(
        {"group_vars/all/registry.yml": "gpuprov_registry: {address: r, password: hunter2}\n"},
        ("registry.yml", "inventory", "gpuprov_registry.password", "plain text"),
        warning=True,
    ),
    "IPv6 loopback": Case(
        {"hosts.yml": HOSTS + "      gpuprov_bind_address: '::1'\n"},
        ("hosts.yml", "host 'gpu1'", "gpuprov_bind_address", "is an IPv6 address"),
    ),
    "IPv6 any": Case(
        {"hosts.yml": HOSTS + "      gpuprov_bind_address: '::'\n"},
        ("hosts.yml", "host 'gpu1'", "gpuprov_bind_address", "is an IPv6 address"),
    ),
    # What a team may write.
    "a gid of the user's own": Case(users(alice_with("gid: 2001"))),
    "a team group": Case(users(alice_with("gid: 3000"), BOB)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_name_and_secret_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
