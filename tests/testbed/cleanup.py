"""Finding and removing what a test bed leaves behind: mounts and processes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .procs import run


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of roots, deepest first so they unmount in order."""
    prefixes = [str(r) for r in roots]
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_under(*roots: Path) -> None:
    for point in mounts_under(*roots):
        # Lazy: a mount still busy after its daemon died must not block the teardown.
        run(["umount", "-l", point], check=False)


def processes_mentioning(*needles: str) -> list[str]:
    """Live processes whose command line contains any needle (e.g. the run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(n in cmdline for n in needles):
            found.append(f"pid {entry.name}: {cmdline.strip()}")
    return found


def processes_in_containers(container_ids: list[str]) -> list[str]:
    """Live processes still in the cgroup of one of the bed's containers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if any(cid in cgroups for cid in container_ids):
            found.append(f"pid {entry.name} ({comm}) in a test-bed container's cgroup")
    return found


def reap_zombie_children() -> None:
    """Collect our exited children (e.g. shims reparented to us) so none linger as zombies."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and fields[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry.name), os.WNOHANG)
