"""TestBed: a private Docker engine, a local registry and SSH test hosts with their own engines.

Layout, all inside one network namespace the bed creates (nothing reaches the
machine's real network):

    controller --nsenter--> netns gpuprov-tb
        dockerd (outer, private)      user network 10.210.0.0/24
        docker-registry 10.210.0.1:5000  (the bridge's gateway address)
        host containers 10.210.0.11, .12, ...: sshd + their own dockerd
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import yaml

from . import cleanup, images, netns
from .engine import Engine
from .hosts import HostSpec
from .lock import RunLock
from .paths import NVIDIA_SMI_FIXTURES, cache_dir
from .procs import CommandError, run, wait_for
from .registry import Registry

# Several beds may run side by side (developers testing in parallel): each
# slot has its own namespace, subnet, engine data root and lock.
SLOT = int(os.environ.get("GPUPROV_TESTBED_SLOT", "0"))
NETNS = f"gpuprov-tb{SLOT or ''}"
NETWORK = NETNS
NET_PREFIX = f"10.{210 + SLOT}.0"
SUBNET = f"{NET_PREFIX}.0/24"
GATEWAY = f"{NET_PREFIX}.1"
REGISTRY_PORT = 5000
FIRST_HOST_IP = 11
CONTAINER_PREFIX = f"{NETNS}-"
ENGINE_DIR = "docker" if not SLOT else f"docker-slot{SLOT}"
LABEL = "gpuprov.testbed"
RUN_DIR_PREFIX = f"gpuprov-testbed{SLOT or ''}-"


class TestBed:
    """Start with `with TestBed([...]) as bed:` or start()/stop(); stop() always cleans up."""

    __test__ = False  # a library class, not a pytest test class

    def __init__(self, hosts: list[HostSpec], workdir: Path | None = None) -> None:
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique: {names}")
        self.hosts = {h.name: h for h in hosts}
        self._workdir = workdir
        self.run_dir: Path | None = None
        self.engine: Engine | None = None
        self._registry: Registry | None = None
        self._auth_registries: list[Registry] = []
        self._lock = RunLock(cache_dir() / f"testbed{SLOT or ''}.lock")
        self._container_ids: list[str] = []
        self.host_image: str | None = None
        self.base_image: str = images.BASE_IMAGE
        self.timings: dict[str, float] = {}
        self.build_log: list[str] = []
        # Set once the lock is ours: a bed refused by the lock must not tear down the live one.
        self._owns_machine = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> TestBed:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bring everything up; on any failure tear down what was started, then re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        began = time.monotonic()
        self._lock.acquire()
        self._owns_machine = True
        self._clean_stale()
        if self._workdir:
            self._workdir.mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX, dir=self._workdir))
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "gpuprov-testbed",
                "-f",
                str(self.ssh_key),
            ]
        )
        netns.create(NETNS)
        self.engine = Engine(NETNS, self.run_dir, cache_dir() / ENGINE_DIR, [SUBNET])
        self.engine.start()
        self._remove_stale_objects()
        self.timings["engine"] = time.monotonic() - began

        mark = time.monotonic()
        self.base_image = images.ensure_base_images(self.engine, self.build_log)
        self.host_image = images.ensure_host_image(self.engine)
        self.timings["images"] = time.monotonic() - mark

        mark = time.monotonic()
        self.engine.docker(
            "network", "create", "--label", LABEL, "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK
        )
        self._registry = Registry(NETNS, self.run_dir, GATEWAY, REGISTRY_PORT)
        self._registry.start()
        for name in self.hosts:
            self._run_host(name)
        self._wait_hosts_ready(list(self.hosts))
        self.timings["hosts"] = time.monotonic() - mark
        self.timings["total"] = time.monotonic() - began

    def stop(self) -> None:
        """Tear down everything this bed started; safe to call twice or after a failed start.

        Every step runs even if an earlier one failed; the failures are raised together.
        """
        if not self._owns_machine:
            return
        errors: list[str] = []

        def attempt(what: str, step) -> None:
            try:
                step()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        if self.engine is not None and self.engine.daemon.alive():
            for name in self.hosts:
                attempt(
                    f"remove host {name}",
                    lambda n=name: self.engine.docker(
                        "rm", "-f", "-v", self.container(n), check=False
                    ),
                )
            attempt(
                "remove network", lambda: self.engine.docker("network", "rm", NETWORK, check=False)
            )
        if self._registry is not None:
            attempt("stop registry", self._registry.stop)
            self._registry = None
        while self._auth_registries:
            attempt("stop registry", self._auth_registries.pop().stop)
        if self.engine is not None:
            attempt("stop dockerd", self.engine.stop)
            self.engine = None
        attempt("reap", cleanup.reap_zombie_children)
        roots = [cache_dir() / ENGINE_DIR] + ([self.run_dir] if self.run_dir else [])
        attempt("unmount", lambda: cleanup.unmount_under(*roots))
        attempt("kill namespace processes", lambda: netns.kill_all(NETNS))
        attempt("delete namespace", lambda: netns.delete(NETNS))
        if self.run_dir is not None:
            attempt("remove run dir", lambda: shutil.rmtree(self.run_dir, ignore_errors=True))
        self._lock.release()
        self._owns_machine = False
        if errors:
            raise RuntimeError("test bed teardown failed:\n" + "\n".join(errors))

    def leftovers(self) -> list[str]:
        """What a stopped bed still left on the machine; empty when the teardown was clean."""
        found = []
        if netns.exists(NETNS):
            found.append(f"network namespace {NETNS}")
        # The engine dir of slot 0 is a prefix of the other slots' dirs: match it whole.
        engine = str(cache_dir() / ENGINE_DIR)
        needles = [f"{engine} ", f"{engine}/", RUN_DIR_PREFIX, f"{netns.path(NETNS)} "]
        found += cleanup.processes_mentioning(*needles)
        found += cleanup.processes_in_containers(self._container_ids)
        found += [
            f"mount {m}" for m in cleanup.mounts_under(cache_dir() / ENGINE_DIR, netns.path(NETNS))
        ]
        if self.run_dir is not None and self.run_dir.exists():
            found.append(f"run directory {self.run_dir}")
        containers = cache_dir() / ENGINE_DIR / "containers"
        if containers.is_dir():
            found += [f"container {c.name}" for c in containers.iterdir()]
        return found

    def _clean_stale(self) -> None:
        """Remove what a killed earlier run left: we hold the lock, so none of it is live."""
        netns.kill_all(NETNS)
        cleanup.reap_zombie_children()
        stale_runs = [
            Path(m).parent
            for m in cleanup.mounts_under(Path(tempfile.gettempdir()))
            if RUN_DIR_PREFIX in m
        ]
        cleanup.unmount_under(cache_dir() / ENGINE_DIR, *stale_runs)
        netns.delete(NETNS)

    def _remove_stale_objects(self) -> None:
        """The data root persists, so containers of a killed run are still registered."""
        assert self.engine
        stale = self.engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
        if stale:
            self.engine.docker("rm", "-f", "-v", *stale)
        if self.engine.docker("network", "inspect", NETWORK, check=False).returncode == 0:
            self.engine.docker("network", "rm", NETWORK)
        self.engine.docker("volume", "prune", "-f")

    # ------------------------------------------------------------ hosts

    def container(self, host: str) -> str:
        """Name of the host's container in the outer engine."""
        self._spec(host)
        return CONTAINER_PREFIX + host

    def _spec(self, host: str) -> HostSpec:
        try:
            return self.hosts[host]
        except KeyError:
            raise KeyError(f"no test host {host!r}; hosts: {sorted(self.hosts)}") from None

    def host_address(self, host: str) -> str:
        """The host's IP on the bed's network (reachable only inside the bed's namespace)."""
        self._spec(host)
        return f"{NET_PREFIX}.{FIRST_HOST_IP + list(self.hosts).index(host)}"

    def _config_path(self, host: str) -> Path:
        assert self.run_dir
        return self.run_dir / "hosts" / host / "config.json"

    def _run_host(self, host: str) -> None:
        assert self.engine and self.run_dir and self.host_image
        config = self._config_path(host)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(self._spec(host).fake_config([SUBNET]), indent=2))
        cid = self.engine.docker(
            "run",
            "-d",
            "--name",
            self.container(host),
            "--hostname",
            host,
            "--label",
            LABEL,
            "--network",
            NETWORK,
            "--ip",
            self.host_address(host),
            # Reduced-capability docker-in-docker: --privileged fails on these VMs.
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            # runc exec (and so a HEALTHCHECK) opens the target's /proc/PID/ns/*,
            # which for a process of another uid takes ptrace rights.
            "--cap-add",
            "SYS_PTRACE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            # /proc/sys is read-only in the host, so the inner dockerd cannot switch
            # forwarding on itself; a new namespace does not always inherit it on.
            "--sysctl",
            "net.ipv4.ip_forward=1",
            # The inner engine's overlay2 needs a non-overlay filesystem under it.
            "-v",
            "/var/lib/docker",
            "-v",
            f"{config}:/etc/gpuprov-fake/config.json:ro",
            "-v",
            f"{self.ssh_key}.pub:/etc/gpuprov-fake/authorized_keys:ro",
            "-v",
            f"{NVIDIA_SMI_FIXTURES}:/usr/share/gpuprov-fake/nvidia-smi:ro",
            self.host_image,
        ).stdout.strip()
        self._container_ids.append(cid)

    def _wait_hosts_ready(self, hosts: list[str], timeout: float = 30) -> None:
        """Ready = inner dockerd answers; then SSH must work with the run's key."""
        assert self.engine
        pending = set(hosts)

        def probe() -> bool:
            for host in sorted(pending):
                proc = self.engine.docker(
                    "exec",
                    self.container(host),
                    "test",
                    "-e",
                    "/run/gpuprov-fake-ready",
                    check=False,
                )
                if proc.returncode == 0:
                    pending.discard(host)
                elif not self._running(host):
                    logs = self.engine.docker(
                        "logs", "--tail", "50", self.container(host), check=False
                    )
                    raise CommandError(
                        f"host {host} exited during boot:\n{logs.stdout}{logs.stderr}"
                    )
            return not pending

        wait_for(
            f"hosts {sorted(pending)}",
            probe,
            timeout=timeout,
            interval=0.2,
            details=lambda: self._diagnose(sorted(pending)),
        )
        errors: list[str] = []

        def check_ssh(host: str) -> None:
            proc = self.ssh(host, "true", check=False, timeout=30)
            if proc.returncode != 0:
                errors.append(f"{host}: ssh exited {proc.returncode}: {proc.stderr}")

        threads = [threading.Thread(target=check_ssh, args=(h,)) for h in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise CommandError("SSH to test hosts failed:\n" + "\n".join(errors))

    def _diagnose(self, hosts: list[str]) -> str:
        """Boot output and the inner dockerd's log of hosts that did not come up."""
        assert self.engine
        parts = []
        for host in hosts:
            logs = self.engine.docker("logs", "--tail", "20", self.container(host), check=False)
            inner = self.engine.docker(
                "exec", self.container(host), "tail", "-n", "20", "/var/log/docker.log", check=False
            )
            parts.append(
                f"--- {host} boot:\n{logs.stdout}{logs.stderr}"
                f"--- {host} /var/log/docker.log:\n{inner.stdout}{inner.stderr}"
            )
        return "\n".join(parts)

    def _running(self, host: str) -> bool:
        assert self.engine
        proc = self.engine.docker(
            "inspect", "-f", "{{.State.Running}}", self.container(host), check=False
        )
        return proc.stdout.strip() == "true"

    def stop_host(self, host: str) -> None:
        """A real outage: the host's container stops (sshd and its engine with it)."""
        assert self.engine
        self.engine.docker("stop", "-t", "20", self.container(host))

    def start_host(self, host: str) -> None:
        """Bring a stopped host back, with its inner containers, and wait until SSH works."""
        assert self.engine
        self.engine.docker("start", self.container(host))
        self._wait_hosts_ready([host])

    def reconfigure_host(self, host: str, **changes: object) -> None:
        """Change a host's fake-tool config (HostSpec fields) while it runs.

        nvidia-smi and the toolkit fakes read it on every call; whether the
        toolkit binaries are on PATH is decided at boot, so restart the host
        (stop_host/start_host) after changing toolkit_version.
        """
        spec = self._spec(host)
        for field, value in changes.items():
            if not hasattr(spec, field) or field == "name":
                raise AttributeError(f"HostSpec has no settable field {field!r}")
            setattr(spec, field, value)
        spec.__post_init__()
        self._config_path(host).write_text(json.dumps(spec.fake_config([SUBNET]), indent=2))

    # ------------------------------------------------------------ access

    @property
    def registry(self) -> str:
        """The local registry as ADDR:PORT, as the hosts (and the outer engine) see it."""
        return f"{GATEWAY}:{REGISTRY_PORT}"

    def start_auth_registry(self, user: str, password: str, port: int = REGISTRY_PORT + 1) -> str:
        """Start a second registry that demands `user`/`password` (htpasswd, plain HTTP) on
        the gateway at `port`; the default registry stays open. Returns ADDR:PORT (insecure
        for every engine, as the whole subnet is); stop() stops it."""
        assert self.run_dir, "test bed not started"
        registry = Registry(NETNS, self.run_dir, GATEWAY, port, auth=(user, password))
        self._auth_registries.append(registry)  # stop() stops it even if start() fails
        registry.start()
        return registry.endpoint

    @property
    def ssh_key(self) -> Path:
        """Private key that logs in as root on every host."""
        assert self.run_dir
        return self.run_dir / "id_ed25519"

    def push_image(self, local_ref: str, repository: str) -> str:
        """Push a local image of the outer engine to the bed's registry.

        Returns `REGISTRY/repository@sha256:...`, the by-digest reference hosts pull.
        """
        assert self.engine
        remote = f"{self.registry}/{repository}"
        self.engine.docker("tag", local_ref, remote)
        self.engine.docker("push", remote)
        digests = self.engine.docker(
            "image", "inspect", "-f", "{{json .RepoDigests}}", remote
        ).stdout
        repo_name = remote.rsplit(":", 1)[0] if ":" in remote.split("/")[-1] else remote
        for digest_ref in json.loads(digests):
            if digest_ref.startswith(repo_name + "@"):
                return digest_ref
        raise CommandError(f"no registry digest for {remote} after push: {digests}")

    def shell_image(self) -> str:
        """A tiny runnable image (dash + libc, ~2 MB) in the outer engine, for quick containers."""
        assert self.engine and self.run_dir
        return images.ensure_shell_image(self.engine, self.run_dir / "shell-image")

    def docker_env(self) -> dict[str, str]:
        """Environment for `docker` (or the Docker SDK) to use the private outer engine."""
        assert self.engine, "test bed not started"
        return self.engine.env()

    def in_netns(self, argv: list[str]) -> list[str]:
        """argv run inside the bed's namespace, where host IPs and the registry are reachable."""
        return ["nsenter", f"--net={netns.path(NETNS)}", *argv]

    def in_host_netns(self, host: str, argv: list[str]) -> list[str]:
        """argv run in a host's own network namespace: its 127.0.0.1 and published ports.

        The PID is looked up on every call because it changes when the host restarts.
        """
        assert self.engine
        pid = self.engine.docker("inspect", "-f", "{{.State.Pid}}", self.container(host)).stdout
        if pid.strip() in ("", "0"):
            raise RuntimeError(f"host {host} is not running")
        return ["nsenter", f"--net=/proc/{pid.strip()}/ns/net", *argv]

    def _ssh_options(self) -> list[str]:
        return [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            # A host the tests stop mid-run may die without closing its connections:
            # ssh must give up instead of waiting on TCP. (Ansible's runs put
            # ansible.cfg's own keepalives first, and ssh keeps the first it reads.)
            "-o",
            "ServerAliveInterval=3",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            # ssh ends its proxy with SIGHUP; under nohup (or a CI runner) the proxy
            # would inherit SIGHUP ignored, outlive ssh and hold its pipes open.
            f"ProxyCommand=env --default-signal=HUP nsenter --net={netns.path(NETNS)} nc %h %p",
        ]

    def ssh_argv(self, host: str) -> list[str]:
        """`ssh` argv for root on the host; append the remote command."""
        return [
            "ssh",
            "-i",
            str(self.ssh_key),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            *self._ssh_options(),
            f"root@{self.host_address(host)}",
        ]

    def ssh(
        self, host: str, command: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a shell command on the host over real SSH; returns CompletedProcess (text)."""
        return run([*self.ssh_argv(host), command], check=check, timeout=timeout)

    def ansible_host_vars(self, host: str) -> dict[str, str]:
        """Connection variables for Ansible (OpenSSH through the bed's namespace)."""
        return {
            "ansible_host": self.host_address(host),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.ssh_key),
            "ansible_ssh_common_args": " ".join(
                f"'{o}'" if " " in o else o for o in self._ssh_options()
            ),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def write_inventory(self, path: Path, extra_host_vars: dict[str, dict] | None = None) -> Path:
        """Write an Ansible YAML inventory of all hosts (group `all`), extra vars merged in."""
        extra = extra_host_vars or {}
        unknown = set(extra) - set(self.hosts)
        if unknown:
            raise KeyError(f"extra_host_vars for unknown hosts: {sorted(unknown)}")
        hosts = {h: {**self.ansible_host_vars(h), **extra.get(h, {})} for h in self.hosts}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        return path
