"""One test-bed run per machine: the bed owns fixed names (namespace, network, data root)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class BedBusy(RuntimeError):
    """Another test-bed run holds the machine."""


class RunLock:
    """An flock: released by the kernel even when the holding process is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BedBusy(
                f"another gpuprov test bed is running (pid {holder}, lock {self.path}); "
                "only one may run at a time on a machine"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
