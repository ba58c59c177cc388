"""The private outer Docker engine, in its own network namespace.

Started with `nsenter --net=` (not `ip netns exec`, which remounts /sys and leaves
dockerd without cgroups). Its data root is persistent so built images survive
between runs; exec root, pidfile and socket live in the per-run directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from . import netns
from .procs import CommandError, Daemon, run, wait_for


class Engine:
    """A dockerd child process listening on a unix socket in the run directory."""

    def __init__(
        self,
        netns_name: str,
        run_dir: Path,
        data_root: Path,
        insecure_registries: Sequence[str] = (),
    ) -> None:
        self.netns_name = netns_name
        self.run_dir = run_dir
        self.data_root = data_root
        self.socket = run_dir / "docker.sock"
        argv = [
            "nsenter",
            f"--net={netns.path(netns_name)}",
            "dockerd",
            "--data-root",
            str(data_root),
            "--exec-root",
            str(run_dir / "exec"),
            "--pidfile",
            str(run_dir / "docker.pid"),
            "-H",
            f"unix://{self.socket}",
            "--storage-driver",
            "overlay2",
        ]
        for registry in insecure_registries:
            argv += ["--insecure-registry", registry]
        self.daemon = Daemon("dockerd", argv, run_dir / "dockerd.log")

    def env(self) -> dict[str, str]:
        """Client environment for this engine.

        DOCKER_BUILDKIT=0: the CLI here is newer than Debian's engine and would
        otherwise insist on the buildx plugin, which Debian 12 does not ship.
        """
        return {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float | None = 600,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        return run(
            ["docker", *args], check=check, env=self.env(), input=input, timeout=timeout, text=text
        )

    def start(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.daemon.start()
        wait_for(
            "private dockerd",
            self._answers,
            timeout=60,
            details=self.daemon.log_tail,
        )

    def _answers(self) -> bool:
        if not self.daemon.alive():
            raise CommandError(f"dockerd exited early\n{self.daemon.log_tail()}")
        return self.socket.exists() and self.docker("version", check=False).returncode == 0

    def stop(self) -> None:
        self.daemon.stop(timeout=60)
