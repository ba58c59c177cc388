"""Which host paths a workspace may mount, and where in the container.

A volume is a hole in the container's walls: the host's /etc, its Docker socket
or another user's data given to one workspace is root on the host, or that
user's files, for whoever holds it. Paths are judged after normalising them
(``//etc/.`` is ``/etc``), the way the kernel will resolve them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Sequence

# The host's own system: mounting one of these, or anything below, hands a
# workspace the host (its configuration, devices, kernel knobs, root's files, the
# Docker engine and its sockets under /run).
SYSTEM_TREES = (
    "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run", "/var/lib/docker",
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
)  # fmt: skip
# Directories that are fine to mount below, never whole: they hold everyone's files.
SHARED_PARENTS = ("/", "/home", "/var", "/srv", "/opt", "/mnt", "/media", "/tmp", "/var/lib")
# Inside the container: the image's system and software (the team's torch stack
# under /usr and /opt), which a mount would shadow.
IMAGE_TREES = ("/etc", "/usr", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
               "/proc", "/sys", "/dev", "/boot", "/root", "/var")  # fmt: skip
# Mount points gpuprov itself gives every workspace.
GPUPROV_TREES = ("/gpuprov", "/run", "/tmp")


def normal(path: str) -> str:
    """The path the kernel resolves: no '.', no doubled or trailing '/'."""
    return "/" + posixpath.normpath(path).lstrip("/") if path else path


def within(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _socket(path: str) -> bool:
    return path.endswith((".sock", ".socket"))


def source_problem(
    source: str, data_root: str, user: str, users: Collection[str], roots: Sequence[str]
) -> tuple[str, str] | None:
    """(message, fix) when a workspace may not mount ``source`` from the host."""
    path = normal(source)
    shown = repr(source) if path == source else f"{source!r} (that is {path})"
    share = "mount a directory made for sharing, such as /srv/datasets"
    if ":" in source:
        return f"{source!r} holds ':', which Docker reads as its own separator", share
    if _socket(path):
        return (
            f"{shown} is a socket; a workspace never gets the Docker socket or another "
            "daemon's, since that is root on the host",
            "remove the volume",
        )
    for tree in SYSTEM_TREES:
        if within(path, tree):
            return f"{shown} is the host's {tree}, which would give the workspace the host", share
    if path in SHARED_PARENTS:
        return f"{shown} holds every user's and service's files", share
    root = normal(data_root)
    if path == root or within(root, path):
        return f"{shown} holds gpuprov's data root {root}, every user's files", share
    # Under the data root, the first name is whose data it is (user_dir).
    owner = path[len(root) :].lstrip("/").split("/")[0] if within(path, root) else None
    if owner == user:
        return (
            f"{shown} is the user's own data, which the workspace already has at its home",
            "remove the volume, or use a path in the home",
        )
    if owner in users:
        return (
            f"{shown} is user '{owner}'s data",
            "share through a common directory both users mount",
        )
    if roots and not any(within(path, normal(r)) for r in roots):
        return (
            f"{shown} is outside the team's volume roots ({', '.join(roots)})",
            "put the data under one of gpuprov_volume_roots, or add its directory there",
        )
    return None


def target_problem(target: str, home: str) -> tuple[str, str] | None:
    """(message, fix) when a volume may not be mounted at ``target`` in the container."""
    path = normal(target)
    shown = repr(target) if path == target else f"{target!r} (that is {path})"
    fix = "mount it at a new directory such as /data/NAME or under the home"
    if ":" in target:
        return f"{target!r} holds ':', which Docker reads as its own separator", fix
    if path == "/" or within(home, path):
        return f"{shown} would hide the user's home {home}", fix
    for tree in IMAGE_TREES:
        if within(path, tree):
            return f"{shown} would shadow the image's {tree} (the team's software)", fix
    for tree in GPUPROV_TREES:
        if within(path, tree):
            return f"{shown} is where gpuprov mounts the workspace's own {tree}", fix
    return None


def data_root_problem(data_root: str) -> str | None:
    """Why ``data_root`` cannot hold users' data: a system directory, or a shared one."""
    path = normal(data_root)
    for tree in SYSTEM_TREES:
        if within(path, tree):
            return f"{data_root!r} is the host's {tree}; users' files do not belong there"
    if path in SHARED_PARENTS:
        return f"{data_root!r} holds every user's and service's files, not only gpuprov's"
    return None
