"""Class 3 of hostile inventories: container paths a volume must not cover."""

from __future__ import annotations

import pytest
from hostile import Case, alice_with, assert_case, users


def at(*targets: str) -> dict[str, str]:
    volumes = ", ".join(
        f'{{source: "/srv/datasets/{i}", target: "{t}"}}' for i, t in enumerate(targets)
    )
    return users(alice_with(f"volumes: [{volumes}]"))


def refused(target: str, words: str) -> Case:
    return Case(
        at(target), ("users.yml", "user 'alice'", "gpuprov_users[0].volumes[0].target", words)
    )


CASES = {
    "the root": refused("/", "would hide the user's home"),
    "the home": refused("/home/alice", "would hide the user's home"),
    "all homes": refused("/home", "would hide the user's home"),
    "/etc": refused("/etc", "shadow the image's /etc"),
    "/usr": refused("/usr", "shadow the image's /usr"),
    "the team's Python packages": refused("/usr/local/lib/python3.11/dist-packages", "/usr"),
    "conda under /opt": refused("/opt/conda", "shadow the image's /opt"),
    "/proc": refused("/proc", "shadow the image's /proc"),
    "/dev": refused("/dev/shm", "shadow the image's /dev"),
    "gpuprov's SSH keys": refused("/gpuprov/ssh", "gpuprov mounts the workspace's own /gpuprov"),
    "the secrets": refused("/run/secrets", "own /run"),
    "/tmp": refused("/tmp", "own /tmp"),
    "a doubled slash": refused("//usr/.", "(that is /usr)"),
    "a colon": refused("/data:ro", "holds ':'"),
    "the same target twice": Case(
        at("/data", "/data/"),
        ("users.yml", "user 'alice'", "gpuprov_users[0].volumes", "two volumes mount at /data"),
    ),
    # What a team may write.
    "a new directory": Case(at("/data", "/datasets")),
    "inside the home": Case(at("/home/alice/datasets")),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_container_path_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
