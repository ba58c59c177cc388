"""Running commands and child daemons that are always killed by PID and waited on.

PID 1 on the machines this runs on does not reap orphans, so every daemon is a
child of the test process and is waited on when it stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class CommandError(RuntimeError):
    """A command failed; the message carries its output so a failing test says why."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = 600,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run argv, capture its output and raise CommandError with that output on failure."""
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        env=full_env,
        input=input,
        timeout=timeout,
        text=text,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} exited {proc.returncode}\n"
            f"stdout: {_tail(proc.stdout)}\nstderr: {_tail(proc.stderr)}"
        )
    return proc


def _tail(output: str | bytes | None, limit: int = 4000) -> str:
    if not output:
        return ""
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return output[-limit:]


def wait_for(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll probe until it is true; on timeout say what never came up (and why, if known)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    extra = f"\n{details()}" if details else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s{extra}")


class Daemon:
    """A long-running child process with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Own process group: a Ctrl-C in pytest must not kill it before we stop it in order.
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return (
                f"{self.name} log ({self.log_path}):\n"
                + self.log_path.read_text(errors="replace")[-limit:]
            )
        except OSError:
            return f"{self.name}: no log at {self.log_path}"

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, wait, then SIGKILL: a daemon that hangs on shutdown still goes away."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
