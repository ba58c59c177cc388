"""Class 2 of hostile inventories: host paths a workspace must never be given."""

from __future__ import annotations

import pytest
from hostile import ALICE, HOSTS, Case, alice_with, assert_case, users

BOB = ALICE.replace("alice", "bob").replace("2001", "2002")


def mount(source: str, *more_users: str) -> Case:
    """Alice mounts ``source`` at /data; the finding names that source."""
    entry = alice_with(f'volumes: [{{source: "{source}", target: /data}}]')
    return Case(users(entry, *more_users))


def refused(source: str, words: str, *more_users: str) -> Case:
    case = mount(source, *more_users)
    key = "gpuprov_users[0].volumes[0].source"
    return Case(case.files, ("users.yml", "user 'alice'", key, words))


def host_setting(line: str, words: str, key: str) -> Case:
    return Case({"hosts.yml": HOSTS + f"      {line}\n"}, ("hosts.yml", "host 'gpu1'", key, words))


CASES = {
    "the root": refused("/", "every user's and service's files"),
    "/etc": refused("/etc", "the host's /etc"),
    "below /etc": refused("/etc/ssl/private", "the host's /etc"),
    "/proc": refused("/proc", "the host's /proc"),
    "/sys": refused("/sys/fs/cgroup", "the host's /sys"),
    "/dev": refused("/dev", "the host's /dev"),
    "/boot": refused("/boot", "the host's /boot"),
    "/root": refused("/root/.ssh", "the host's /root"),
    "/usr": refused("/usr/bin", "the host's /usr"),
    "the Docker socket": refused("/var/run/docker.sock", "never gets the Docker socket"),
    "the Docker socket under /run": refused("/run/docker.sock", "never gets the Docker socket"),
    "any socket": refused("/srv/app/agent.sock", "is a socket"),
    "the run directory": refused("/run/containerd", "the host's /run"),
    "Docker's data": refused("/var/lib/docker/volumes", "the host's /var/lib/docker"),
    "gpuprov's secrets": refused("/etc/gpuprov/secrets", "the host's /etc"),
    "a doubled slash": refused("//etc", "(that is /etc)"),
    "a trailing dot": refused("/etc/.", "(that is /etc)"),
    "a dot-dot that the schema sees": Case(
        mount("/srv/data/../../etc").files,
        ("users.yml", "user 'alice'", "gpuprov_users[0].volumes[0].source", "without '..'"),
    ),
    "all homes": refused("/home", "every user's and service's files"),
    "/srv whole": refused("/srv", "every user's and service's files"),
    "the data root": refused("/srv/gpuprov", "gpuprov's data root /srv/gpuprov"),
    "another user's data": refused("/srv/gpuprov/bob/home", "is user 'bob's data", BOB),
    "the user's own data": refused("/srv/gpuprov/alice", "the user's own data"),
    "a colon": refused("/srv/data:/etc", "holds ':'"),
    "outside the volume roots": Case(
        {
            **mount("/mnt/scratch").files,
            "group_vars/all/volumes.yml": "gpuprov_volume_roots: [/srv/datasets]\n",
        },
        ("users.yml", "user 'alice'", "gpuprov_users[0].volumes[0].source", "outside the team's"),
    ),
    "a data root of /": host_setting("gpuprov_data_root: /", "every user's", "gpuprov_data_root"),
    "a data root in /etc": host_setting(
        "gpuprov_data_root: /etc/gpuprov", "the host's /etc", "gpuprov_data_root"
    ),
    "a data root of /home": host_setting(
        "gpuprov_data_root: /home", "every user's", "gpuprov_data_root"
    ),
    "volume roots that are not absolute": host_setting(
        "gpuprov_volume_roots: [data]", "must be an absolute path", "gpuprov_volume_roots[0]"
    ),
    # What a team may write.
    "a dataset directory": mount("/srv/datasets/imagenet"),
    "a dataset inside the volume roots": Case(
        {
            **mount("/srv/datasets/imagenet").files,
            "group_vars/all/volumes.yml": "gpuprov_volume_roots: [/srv/datasets, /mnt/nfs]\n",
        }
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_path_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
