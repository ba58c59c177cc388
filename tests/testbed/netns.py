"""Network namespaces the bed creates, so its daemons and bridges never touch the real network."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .procs import run

NETNS_DIR = Path("/run/netns")


def path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path(name).exists()


def create(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def pids(name: str) -> list[int]:
    """PIDs of processes living in the namespace (zombies included, they keep the link)."""
    if not exists(name):
        return []
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split()]


def kill_all(name: str, timeout: float = 15) -> None:
    """SIGKILL what a crashed earlier run left in the namespace, and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while (left := pids(name)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap_if_child(pid)
        time.sleep(0.2)


def _reap_if_child(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def delete(name: str) -> None:
    if exists(name):
        run(["ip", "netns", "delete", name])
