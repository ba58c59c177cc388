"""The local registry hosts pull from: Debian's `docker-registry` (CNCF distribution 2.8)."""

from __future__ import annotations

from pathlib import Path

from . import netns
from .procs import Daemon, run, wait_for


class Registry:
    """Plain-HTTP registry in the engine's namespace, storage in the run directory.

    With `auth=(user, password)` it demands HTTP basic auth from an htpasswd file (bcrypt,
    the only format distribution accepts). Registry 2.8 serves that over plain HTTP, and
    Docker sends the credentials to a registry it lists as insecure.
    """

    def __init__(
        self,
        netns_name: str,
        run_dir: Path,
        address: str,
        port: int,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.netns_name = netns_name
        self.address = address
        self.port = port
        # The default registry keeps its historical file names; another one is named by port.
        name = "registry" if auth is None else f"registry-{port}"
        storage = run_dir / name
        config = run_dir / f"{name}.yml"
        text = (
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{address}:{port}'}}\n"
        )
        if auth is not None:
            import bcrypt  # only the authenticated registry needs it

            user, password = auth
            htpasswd = run_dir / f"{name}.htpasswd"
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
            htpasswd.write_text(f"{user}:{hashed}\n")
            htpasswd.chmod(0o600)
            text += f"auth: {{htpasswd: {{realm: gpuprov-testbed, path: {htpasswd}}}}}\n"
        config.write_text(text)
        self.daemon = Daemon(
            "docker-registry",
            ["nsenter", f"--net={netns.path(netns_name)}", "docker-registry", "serve", str(config)],
            run_dir / f"{name}.log",
        )

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> None:
        self.daemon.start()
        wait_for("registry", self._answers, timeout=30, details=self.daemon.log_tail)

    def _answers(self) -> bool:
        if not self.daemon.alive():
            raise RuntimeError(f"docker-registry exited early\n{self.daemon.log_tail()}")
        probe = [
            "nsenter",
            f"--net={netns.path(self.netns_name)}",
            "nc",
            "-z",
            self.address,
            str(self.port),
        ]
        return run(probe, check=False).returncode == 0

    def stop(self) -> None:
        self.daemon.stop()
